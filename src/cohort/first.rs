//! The first layer's weights of a cohort, side by side, and the SGD step
//! applied to every tensor of a run.

use anyhow::Result;

use super::{Run, C, H1, H2, IN};

/// The SGD step on one tensor, element by element as candle computes
/// `w.affine(1 - lr wd, 0) - (g * lr)` after `g = (g_a + g_b) * mask`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sgd {
    pub(super) lr: f32,
    /// 1 - lr wd, when the tensor decays.
    pub(super) decay: Option<f32>,
}

impl Sgd {
    /// Updates `w` with the gradient `a` (+ `b`, the second half's) times
    /// `mask`; in chunks, so each loop is a plain vectorisable pass.
    pub(super) fn apply(&self, w: &mut [f32], a: &[f32], b: Option<&[f32]>, mask: Option<&[f32]>) {
        const CHUNK: usize = 256;
        let mut g = [0f32; CHUNK];
        for start in (0..w.len()).step_by(CHUNK) {
            let len = CHUNK.min(w.len() - start);
            let span = start..start + len;
            let g = &mut g[..len];
            g.copy_from_slice(&a[span.clone()]);
            if let Some(b) = b {
                for (x, y) in g.iter_mut().zip(&b[span.clone()]) {
                    *x += *y;
                }
            }
            if let Some(m) = mask {
                for (x, y) in g.iter_mut().zip(&m[span.clone()]) {
                    *x *= *y;
                }
            }
            let lr = self.lr;
            let w = &mut w[span];
            match self.decay {
                Some(d) => {
                    for (w, g) in w.iter_mut().zip(g.iter()) {
                        *w = (*w * d + 0.0) - (*g * lr + 0.0);
                    }
                }
                None => {
                    for (w, g) in w.iter_mut().zip(g.iter()) {
                        *w -= *g * lr + 0.0;
                    }
                }
            }
        }
    }
}

/// The first layer's weights of every run in the cohort, side by side:
/// row i holds the R runs' rows i, each H1 wide.
#[derive(Default)]
pub(super) struct First {
    /// Runs (indices into the cohort) whose columns these are, in order.
    pub(super) members: Vec<usize>,
    pub(super) w: Vec<f32>,
    /// The weights as this step uses them, when some run masks them.
    masked: Option<Vec<f32>>,
}

impl First {
    pub(super) fn new(runs: &[Run]) -> Result<Self> {
        let mut f = First::default();
        let all: Vec<usize> = (0..runs.len()).collect();
        f.build(runs, &all);
        Ok(f)
    }

    pub(super) fn width(&self) -> usize {
        self.members.len() * H1
    }

    fn build(&mut self, runs: &[Run], members: &[usize]) {
        let rw = members.len() * H1;
        self.w = vec![0f32; IN * rw];
        for (col, &r) in members.iter().enumerate() {
            for i in 0..IN {
                self.w[i * rw + col * H1..i * rw + (col + 1) * H1]
                    .copy_from_slice(&runs[r].w1[i * H1..(i + 1) * H1]);
            }
        }
        self.members = members.to_vec();
        self.masked = None;
    }

    /// Keeps the columns of `live` runs only (copying the weights of the
    /// others out to them first).
    pub(super) fn keep(&mut self, runs: &mut [Run], live: &[usize]) {
        if self.members == live {
            return;
        }
        for (col, &r) in self.members.clone().iter().enumerate() {
            self.copy_out(col, &mut runs[r].w1);
        }
        self.build(runs, live);
    }

    pub(super) fn copy_out(&self, col: usize, w1: &mut Vec<f32>) {
        let rw = self.width();
        w1.resize(IN * H1, 0.0);
        for i in 0..IN {
            w1[i * H1..(i + 1) * H1]
                .copy_from_slice(&self.w[i * rw + col * H1..i * rw + (col + 1) * H1]);
        }
    }

    /// Builds this step's used weights when some run masks its first
    /// layer: w * mask in its columns, w elsewhere.
    pub(super) fn apply_masks(&mut self, runs: &[Run], live: &[usize]) {
        if !live
            .iter()
            .any(|&r| runs[r].p.live && runs[r].p.mask[0].is_some())
        {
            self.masked = None;
            return;
        }
        let rw = self.width();
        let used = self.masked.get_or_insert_with(Vec::new);
        used.resize(self.w.len(), 0.0);
        used.copy_from_slice(&self.w);
        for (col, &r) in live.iter().enumerate() {
            if let (true, Some(m)) = (runs[r].p.live, &runs[r].p.mask[0]) {
                for i in 0..IN {
                    let at = i * rw + col * H1;
                    mul_into(
                        &mut used[at..at + H1],
                        &self.w[at..at + H1],
                        &m[i * H1..(i + 1) * H1],
                    );
                }
            }
        }
    }

    pub(super) fn used(&self) -> &[f32] {
        self.masked.as_deref().unwrap_or(&self.w)
    }
}

/// With two threads, the first layer's rows from here on are updated on the
/// second while the first updates the rows above and every run's other
/// tensors: about half of a run's parameters on each.
pub(super) const SPLIT_ROW: usize = {
    let rest = H1 * H2 + H2 * C + H1 + H2 + C;
    IN - (IN * H1 + rest) / (2 * H1)
};

/// A run's step rule and first-layer mask for one step, or None when it
/// sits the step out.
pub(super) type Rule<'a> = Option<(Sgd, Option<&'a [f32]>)>;

/// The SGD step on rows `from..` of the cohort's first-layer matrix (`w`
/// holds those rows, each `rw` wide) for every run: `rules[col]` is the
/// step rule and first-layer mask of the run in column `col`, or None if
/// it sits this step out. `grads` are the halves' gradients of the whole
/// matrix (the second absent when the batch was not split).
pub(super) fn step_rows(
    w: &mut [f32],
    from: usize,
    rw: usize,
    rules: &[Rule],
    grads: (&[f32], Option<&[f32]>),
) {
    for (r, row) in w.chunks_exact_mut(rw).enumerate() {
        let i = from + r;
        for (col, rule) in rules.iter().enumerate() {
            let Some((sgd, mask)) = rule else { continue };
            let span = col * H1..(col + 1) * H1;
            let at = i * rw + col * H1..i * rw + (col + 1) * H1;
            sgd.apply(
                &mut row[span],
                &grads.0[at.clone()],
                grads.1.map(|g| &g[at]),
                mask.map(|m| &m[i * H1..(i + 1) * H1]),
            );
        }
    }
}

/// out = a * b, element-wise.
pub(super) fn mul_into(out: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x * y;
    }
}
