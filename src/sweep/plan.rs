//! Which runs a sweep trains together, and in what order.

use crate::record::RunSpec;

/// Splits `todo` into the items a sweep trains: runs of one seed and batch
/// size (a stack shares its batches) in pieces of at most `batch` runs,
/// longest first. Pieces are made smaller than `batch` when that is what
/// keeps `jobs` workers equally busy (three stacks of 5 on two workers
/// would leave one idle a third of the time; pieces of 3 and 2 do not).
pub(super) fn stacks<'s>(todo: &[&'s RunSpec], batch: usize, jobs: usize) -> Vec<Vec<&'s RunSpec>> {
    let mut groups: Vec<Vec<&RunSpec>> = Vec::new();
    for &spec in todo {
        let same = |g: &Vec<&RunSpec>| {
            g[0].seed == spec.seed && g[0].config.batch_size == spec.config.batch_size
        };
        match groups.iter_mut().find(|g| same(g)) {
            Some(g) => g.push(spec),
            None => groups.push(vec![spec]),
        }
    }
    let jobs = jobs.max(1);
    let ideal = todo.len().div_ceil(jobs);
    let split = |cap: usize| -> Vec<Vec<&'s RunSpec>> {
        let mut items = Vec::new();
        for g in &groups {
            let pieces = g.len().div_ceil(cap);
            let (size, extra) = (g.len() / pieces, g.len() % pieces);
            let mut at = 0;
            for k in 0..pieces {
                let len = size + usize::from(k < extra);
                items.push(g[at..at + len].to_vec());
                at += len;
            }
        }
        items.sort_by_key(|i| std::cmp::Reverse(i.len()));
        items
    };
    // The largest pieces whose longest-first schedule on `jobs` workers is
    // as short as an even split.
    for cap in (2..=batch.max(1)).rev() {
        let items = split(cap);
        let mut load = vec![0usize; jobs];
        for i in &items {
            let least = load.iter_mut().min().expect("at least one job");
            *least += i.len();
        }
        if load.into_iter().max().unwrap_or(0) <= ideal {
            return items;
        }
    }
    todo.iter().map(|&s| vec![s]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TrainConfig;

    fn specs(seeds: u64, configs: usize) -> Vec<RunSpec> {
        let mut out = Vec::new();
        for seed in 0..seeds {
            for c in 0..configs {
                out.push(RunSpec {
                    label: format!("c{c}"),
                    config: TrainConfig {
                        lr: 0.1 + c as f64,
                        ..TrainConfig::default()
                    },
                    seed,
                });
            }
        }
        out
    }

    fn sizes(items: &[Vec<&RunSpec>]) -> Vec<usize> {
        items.iter().map(Vec::len).collect()
    }

    /// Every run once; each item one seed; no item over the cap.
    fn check(items: &[Vec<&RunSpec>], all: &[RunSpec], cap: usize) {
        let seen: Vec<&RunSpec> = items.iter().flatten().copied().collect();
        assert_eq!(seen.len(), all.len());
        let distinct: std::collections::HashSet<(&str, u64)> =
            seen.iter().map(|s| (s.label.as_str(), s.seed)).collect();
        assert_eq!(distinct.len(), all.len());
        for i in items {
            assert!(i.len() <= cap.max(1));
            assert!(i.iter().all(|s| s.seed == i[0].seed));
        }
    }

    /// 3 seeds x 5 configurations on 2 workers: stacks of 3 and 2 (8 runs
    /// of work on each worker), not 5, 5, 5 (10 on one).
    #[test]
    fn pieces_keep_workers_equally_busy() {
        let all = specs(3, 5);
        let todo: Vec<&RunSpec> = all.iter().collect();
        let items = stacks(&todo, 8, 2);
        check(&items, &all, 8);
        assert_eq!(sizes(&items), vec![3, 3, 3, 2, 2, 2]);
        // One worker: whole stacks.
        let items = stacks(&todo, 8, 1);
        check(&items, &all, 8);
        assert_eq!(sizes(&items), vec![5, 5, 5]);
        // The cap holds.
        let items = stacks(&todo, 4, 1);
        check(&items, &all, 4);
        assert_eq!(sizes(&items), vec![3, 3, 3, 2, 2, 2]);
        // batch 1, or more workers than runs: one run per item.
        assert_eq!(sizes(&stacks(&todo, 1, 2)), vec![1; 15]);
        assert_eq!(sizes(&stacks(&todo, 8, 20)), vec![1; 15]);
    }

    /// A different batch size is a different batch order: another stack.
    #[test]
    fn batch_size_separates_stacks() {
        let mut all = specs(1, 4);
        all[1].config.batch_size = 128;
        let todo: Vec<&RunSpec> = all.iter().collect();
        let items = stacks(&todo, 8, 1);
        check(&items, &all, 8);
        assert_eq!(sizes(&items), vec![3, 1]);
        assert_eq!(items[1][0].config.batch_size, 128);
    }
}
