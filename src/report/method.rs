//! What REPORT.md states about the method (training images, seeds,
//! epochs, learning rates, the end-of-training window), read off each
//! exercise's resolved settings and the configurations it swept, so that
//! the prose follows `experiments/*.toml` instead of restating it.

use std::collections::BTreeSet;

use crate::data::{TEST_SIZE, TRAIN_SIZE};
use crate::experiments::Experiment;

/// One exercise's method, as its runs were configured.
#[derive(Debug, Clone)]
pub struct Method {
    pub number: u8,
    pub seeds: u32,
    pub plan_seeds: bool,
    pub validation: u32,
    pub train_subset: Option<u32>,
    pub test_subset: Option<u32>,
    /// The epochs of its configurations, ascending.
    pub epochs: Vec<usize>,
    /// The learning rates of its configurations, descending.
    pub lrs: Vec<f64>,
    /// K of its end-of-training metric (the last K epochs).
    pub end_k: usize,
    /// Its default smallest effect of interest, in points.
    pub margin: f64,
}

impl Method {
    pub fn of(exp: &dyn Experiment) -> Self {
        let common = exp.common();
        let configs = exp.configs();
        let epochs: BTreeSet<usize> = configs.iter().map(|(_, c)| c.epochs).collect();
        let mut lrs: Vec<f64> = configs.iter().map(|(_, c)| c.lr).collect();
        lrs.sort_by(|a, b| b.total_cmp(a));
        lrs.dedup();
        Method {
            number: exp.spec().number,
            seeds: common.seeds,
            plan_seeds: common.plan_seeds,
            validation: common.validation,
            train_subset: common.train_subset,
            test_subset: common.test_subset,
            epochs: epochs.into_iter().collect(),
            lrs,
            end_k: common.end_k(),
            margin: common.margin,
        }
    }

    /// The images a run trains on, and what the rest are.
    fn training_images(&self) -> String {
        let v = self.validation as usize;
        let rest = TRAIN_SIZE - v.min(TRAIN_SIZE);
        let held = match v {
            0 => String::new(),
            v => format!(
                "; {} are held out for validation (a fixed choice, the same for every run)",
                thousands(v)
            ),
        };
        match self.train_subset {
            Some(n) => format!(
                "the first {} of the {}{}",
                thousands(n as usize),
                thousands(rest),
                if v == 0 {
                    ""
                } else {
                    " left after the validation split"
                }
            ),
            None => format!("{}{held}", thousands(rest)),
        }
    }

    fn test_images(&self) -> usize {
        self.test_subset
            .map_or(TEST_SIZE, |n| (n as usize).min(TEST_SIZE))
    }

    fn epochs_text(&self) -> String {
        and_list(
            &self
                .epochs
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>(),
        )
    }

    fn lrs_text(&self) -> String {
        and_list(&self.lrs.iter().map(|l| l.to_string()).collect::<Vec<_>>())
    }

    fn end_text(&self) -> String {
        let most = self.epochs.last().copied().unwrap_or(0);
        format!("the last {} of {most} epochs", self.end_k)
    }
}

/// `12345` as `12,345`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The value most exercises share, then the others with their exercises:
/// `10; 50 for exercises 2 and 5`. With `brackets`: `10 (50 for ...)`.
fn grouped(methods: &[Method], value: impl Fn(&Method) -> String, brackets: bool) -> String {
    grouped_in(methods, value, brackets, "")
}

/// [`grouped`], with `unit` after the shared value: `4 epochs (10 for
/// exercise 2)`.
fn grouped_in(
    methods: &[Method],
    value: impl Fn(&Method) -> String,
    brackets: bool,
    unit: &str,
) -> String {
    let mut groups: Vec<(String, Vec<u8>)> = Vec::new();
    for m in methods {
        let v = value(m);
        match groups.iter_mut().find(|(g, _)| *g == v) {
            Some((_, ns)) => ns.push(m.number),
            None => groups.push((v, vec![m.number])),
        }
    }
    // The most common first; ties keep the order of the exercises.
    let main = (0..groups.len())
        .max_by_key(|&i| (groups[i].1.len(), std::cmp::Reverse(i)))
        .unwrap_or(0);
    let Some((first, _)) = groups.get(main).cloned() else {
        return String::new();
    };
    let others: Vec<String> = groups
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != main)
        .map(|(_, (v, ns))| {
            let ns: Vec<String> = ns.iter().map(|n| n.to_string()).collect();
            let word = if ns.len() == 1 {
                "exercise"
            } else {
                "exercises"
            };
            format!("{v} for {word} {}", and_list(&ns))
        })
        .collect();
    match (others.is_empty(), brackets) {
        (true, _) => format!("{first}{unit}"),
        (false, false) => format!("{first}{unit}; {}", others.join("; ")),
        (false, true) => format!("{first}{unit} ({})", others.join("; ")),
    }
}

/// The settings table: the book's settings against the runs'.
pub fn settings_table(methods: &[Method]) -> String {
    let planned = match methods.iter().any(|m| m.plan_seeds) {
        true => ", then the seeds planned for 80% power where a question is undecided (at most a stated maximum)",
        false => "",
    };
    format!(
        "## Settings against the book's

| | the book | here |
|---|---|---|
| model, init, optimiser | MLP 784-256-256-10, ReLU, N(0, 0.01), SGD, batch 256 | the same |
| training images | all {} | {} |
| test images | all {} | {} |
| epochs | 10 | {} |
| learning rate | 0.5 | {} |
| runs | one | {} seeds per configuration{planned} |
| metric | test accuracy of the final epoch | peak: test accuracy at each run's epoch of best validation accuracy; end of training: mean test accuracy of {}; rates of blow-ups; an exercise's own measures |

",
        thousands(TRAIN_SIZE),
        grouped(methods, Method::training_images, false),
        thousands(TEST_SIZE),
        grouped(methods, |m| thousands(m.test_images()), false),
        grouped(methods, Method::epochs_text, false),
        grouped(methods, Method::lrs_text, false),
        grouped(methods, |m| m.seeds.to_string(), false),
        grouped(methods, Method::end_text, false),
    )
}

/// The quick preset's banner: what its runs are, so nobody reads them as
/// answers.
pub fn quick_banner(methods: &[Method]) -> String {
    let train = |m: &Method| {
        let n = m
            .train_subset
            .map_or(TRAIN_SIZE - m.validation as usize, |n| n as usize);
        thousands(n)
    };
    format!(
        "> **Quick preset**: {}, {}, {} and {}. These numbers are a smoke test of the pipeline, \
         not answers; run `drop-exp report` for those.\n\n",
        grouped_in(methods, |m| m.seeds.to_string(), true, " seeds"),
        grouped_in(methods, Method::epochs_text, true, " epochs"),
        grouped_in(methods, train, true, " training"),
        grouped_in(
            methods,
            |m| thousands(m.test_images()),
            true,
            " test images"
        ),
    )
}

/// The test set's own 95% sampling error at 85% accuracy, in points, and
/// the test images it is for (the largest test set of the exercises).
pub fn test_sampling_error(methods: &[Method]) -> (f64, usize) {
    let n = methods
        .iter()
        .map(Method::test_images)
        .max()
        .unwrap_or(TEST_SIZE);
    (100.0 * 1.96 * (0.85f64 * 0.15 / n as f64).sqrt(), n)
}

/// The pilot's seeds, when every exercise starts from the same number.
pub fn pilot_seeds(methods: &[Method]) -> String {
    grouped(methods, |m| m.seeds.to_string(), true)
}

/// The default smallest effect of interest, as exercises set it.
pub fn margins(methods: &[Method]) -> String {
    grouped(methods, |m| m.margin.to_string(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(number: u8, epochs: usize, lrs: &[f64]) -> Method {
        Method {
            number,
            seeds: 5,
            plan_seeds: true,
            validation: 10_000,
            train_subset: None,
            test_subset: None,
            epochs: vec![epochs],
            lrs: lrs.to_vec(),
            end_k: epochs / 5,
            margin: 0.5,
        }
    }

    #[test]
    fn the_table_says_what_the_settings_say() {
        let ms = vec![
            method(1, 10, &[0.5]),
            method(2, 50, &[0.5, 0.2, 0.1]),
            method(3, 10, &[0.5]),
            method(5, 50, &[0.5, 0.2, 0.1]),
        ];
        let t = settings_table(&ms);
        assert!(
            t.contains("| training images | all 60,000 | 50,000; 10,000 are held out"),
            "{t}"
        );
        assert!(
            t.contains("| epochs | 10 | 10; 50 for exercises 2 and 5 |"),
            "{t}"
        );
        assert!(
            t.contains("| learning rate | 0.5 | 0.5; 0.5, 0.2 and 0.1 for exercises 2 and 5 |"),
            "{t}"
        );
        assert!(
            t.contains("5 seeds per configuration, then the seeds planned"),
            "{t}"
        );
        assert!(
            t.contains("the last 2 of 10 epochs; the last 10 of 50 epochs for exercises 2 and 5"),
            "{t}"
        );
        let mut quick: Vec<Method> = ms
            .iter()
            .cloned()
            .map(|mut m| {
                m.seeds = 2;
                m.epochs = vec![if m.number == 2 { 10 } else { 4 }];
                m.train_subset = Some(20_000);
                m.test_subset = Some(5_000);
                m
            })
            .collect();
        quick[0].plan_seeds = false;
        let b = quick_banner(&quick);
        assert!(
            b.contains(
                "2 seeds, 4 epochs (10 for exercise 2), 20,000 training and 5,000 test images"
            ),
            "{b}"
        );
        let (e, n) = test_sampling_error(&ms);
        assert_eq!(n, 10_000);
        assert!((e - 0.70).abs() < 0.01, "{e}");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
