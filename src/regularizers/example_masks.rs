//! The masked product of exact per-example DropConnect on the CPU, as one
//! candle operation with its own backward:
//!
//! ```text
//! z[n, j]  = sum_i x[n, i] (m[n, i, j] W[i, j])
//! dx[n, i] = sum_j (m[n, i, j] W[i, j]) g[n, j]
//! dW[i, j] = sum_n x[n, i] m[n, i, j] g[n, j]
//! ```
//!
//! with `m` either 0 or 1/(1-p). Written as candle tensors (the form kept
//! for other devices, `super::dropconnect_example`), a step builds and
//! differentiates an [n, in, out] tensor of masked weights: 205 MB for the
//! first layer and a batch of 256, written and read several times. Here the
//! masks are drawn once, kept as bits (6.4 MB), and each product walks them
//! row by row; rows whose input is zero add nothing to `z` or `dW` and are
//! skipped there. The masks are the same draws as the tensor form's (see
//! [`draw_rows`]); the sums run in another order, so the bits of `z` differ
//! from the tensor form's by rounding (tested in the kind's file).
//!
//! One thread: a sweep trains one run per core.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};

use crate::rng::Rng;

/// Draws the uniforms of `rows` mask rows of `out` entries: one
/// `fill_uniform` per row, rows in order (example by example, then row by
/// row). Both forms of the kind draw through this, so they see the same
/// masks.
pub(crate) fn draw_rows(rng: &mut Rng, rows: usize, out: usize, mut each: impl FnMut(&[f32])) {
    let mut buf = vec![0f32; out];
    for _ in 0..rows {
        rng.fill_uniform(&mut buf);
        each(&buf);
    }
}

/// Per-example masks of an [in, out] weight matrix, one bit per weight.
pub(crate) struct Masks {
    n: usize,
    k: usize,
    out: usize,
    words: usize,
    scale: f32,
    bits: Vec<u64>,
}

impl Masks {
    /// Masks for `n` examples of a `k` x `out` matrix: a weight is kept
    /// (and scaled by 1/(1-p)) where its uniform exceeds `p`.
    pub(crate) fn draw(rng: &mut Rng, n: usize, k: usize, out: usize, p: f32) -> Self {
        let words = out.div_ceil(64);
        let mut bits = vec![0u64; n * k * words];
        // `fill_uniform`'s uniform u = q / 2^24 (q a 24-bit integer)
        // exceeds p exactly when q exceeds floor(p 2^24): the same masks
        // as `draw_rows`, without the floats.
        let t = (f64::from(p) * f64::from(1u32 << 24)).floor() as u64;
        let keep = |q: u64| u64::from(q > t);
        for row in bits.chunks_exact_mut(words) {
            // Whole words: 32 draws of two uniforms each.
            for word in &mut row[..out / 64] {
                for q in 0..32 {
                    let r = rng.next_u64();
                    *word |= (keep(r >> 40) | keep((r >> 8) & 0xff_ffff) << 1) << (2 * q);
                }
            }
            let mut j = out / 64 * 64;
            while j + 1 < out {
                let r = rng.next_u64();
                row[j / 64] |= u64::from(r >> 40 > t) << (j % 64);
                row[(j + 1) / 64] |= u64::from((r >> 8) & 0xff_ffff > t) << ((j + 1) % 64);
                j += 2;
            }
            if j < out {
                row[j / 64] |= u64::from(rng.next_u64() >> 40 > t) << (j % 64);
            }
        }
        Self {
            n,
            k,
            out,
            words,
            scale: 1.0 / (1.0 - p),
            bits,
        }
    }

    /// Example `n`'s multipliers of weight row `i` (0 or 1/(1-p)) into `m`.
    fn row(&self, n: usize, i: usize, m: &mut [f32]) {
        let at = (n * self.k + i) * self.words;
        let words = &self.bits[at..at + self.words];
        for (chunk, &w) in m.chunks_mut(64).zip(words) {
            for (j, x) in chunk.iter_mut().enumerate() {
                *x = ((w >> j) & 1) as f32 * self.scale;
            }
        }
    }
}

/// `a . b` summed in eight lanes (so that it vectorises), then the lanes
/// in order: a fixed order, whatever the machine.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `x` [n, k] times the per-example masked `w` [k, out]: [n, out], the bias
/// not added. Differentiable in both.
pub(crate) fn masked_product(x: &Tensor, w: &Tensor, masks: Masks) -> Result<Tensor> {
    let (n, k) = x.dims2()?;
    let (k2, out) = w.dims2()?;
    if (n, k, out) != (masks.n, masks.k, masks.out) || k2 != k {
        candle_core::bail!(
            "masked product: x {:?} and w {:?} do not fit masks of {}x{}x{}",
            x.shape(),
            w.shape(),
            masks.n,
            masks.k,
            masks.out
        );
    }
    x.contiguous()?
        .apply_op2(&w.contiguous()?, Forward(Arc::new(masks)))
}

fn f32s<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else {
        candle_core::bail!("masked product: {what} must be f32");
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("masked product: {what} must be contiguous"),
    }
}

/// z = x (m W), per example.
struct Forward(Arc<Masks>);

impl CustomOp2 for Forward {
    fn name(&self) -> &'static str {
        "dropconnect-example-product"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (f32s(s1, l1, "x")?, f32s(s2, l2, "w")?);
        let m = &self.0;
        let (k, out) = (m.k, m.out);
        let mut z = vec![0f32; m.n * out];
        let mut mult = vec![0f32; out];
        for (n, zn) in z.chunks_exact_mut(out).enumerate() {
            for i in 0..k {
                let xi = x[n * k + i];
                if xi == 0.0 {
                    continue;
                }
                m.row(n, i, &mut mult);
                let wi = &w[i * out..(i + 1) * out];
                for ((zj, &mj), &wj) in zn.iter_mut().zip(&mult).zip(wi) {
                    *zj += xi * (mj * wj);
                }
            }
        }
        Ok((CpuStorage::F32(z), Shape::from((m.n, out))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _z: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        // The first layer's input is the images: no gradient wanted.
        let dx = match x.track_op() {
            true => Some(w.apply_op2_no_bwd(&g, &GradX(self.0.clone()))?),
            false => None,
        };
        let dw = x.apply_op2_no_bwd(&g, &GradW(self.0.clone()))?;
        Ok((dx, Some(dw)))
    }
}

/// dx = g (m W)^T, per example; from (w, g).
struct GradX(Arc<Masks>);

impl CustomOp2 for GradX {
    fn name(&self) -> &'static str {
        "dropconnect-example-grad-x"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (w, g) = (f32s(s1, l1, "w")?, f32s(s2, l2, "g")?);
        let m = &self.0;
        let (k, out) = (m.k, m.out);
        let mut dx = vec![0f32; m.n * k];
        let mut mult = vec![0f32; out];
        for (n, dxn) in dx.chunks_exact_mut(k).enumerate() {
            let gn = &g[n * out..(n + 1) * out];
            for (i, d) in dxn.iter_mut().enumerate() {
                m.row(n, i, &mut mult);
                let wi = &w[i * out..(i + 1) * out];
                mult.iter_mut().zip(wi).for_each(|(mj, &wj)| *mj *= wj);
                *d = dot(&mult, gn);
            }
        }
        Ok((CpuStorage::F32(dx), Shape::from((m.n, k))))
    }
}

/// dW = sum over examples of x^T (m g); from (x, g).
struct GradW(Arc<Masks>);

impl CustomOp2 for GradW {
    fn name(&self) -> &'static str {
        "dropconnect-example-grad-w"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, g) = (f32s(s1, l1, "x")?, f32s(s2, l2, "g")?);
        let m = &self.0;
        let (k, out) = (m.k, m.out);
        let mut dw = vec![0f32; k * out];
        let mut mult = vec![0f32; out];
        for n in 0..m.n {
            let gn = &g[n * out..(n + 1) * out];
            for i in 0..k {
                let xi = x[n * k + i];
                if xi == 0.0 {
                    continue;
                }
                m.row(n, i, &mut mult);
                let dwi = &mut dw[i * out..(i + 1) * out];
                for ((d, &mj), &gj) in dwi.iter_mut().zip(&mult).zip(gn) {
                    *d += xi * (mj * gj);
                }
            }
        }
        Ok((CpuStorage::F32(dw), Shape::from((k, out))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    /// The bits are the masks `draw_rows`' uniforms give, for odd and even
    /// row lengths and rates whose p 2^24 is and is not an integer.
    #[test]
    fn bits_are_the_uniforms_masks() {
        for (out, p) in [(67, 0.3f32), (64, 0.5), (5, 0.1), (130, 0.75)] {
            let (n, k) = (3, 4);
            let masks = Masks::draw(&mut Rng::new(5, Stream::Noise), n, k, out, p);
            let mut want = Vec::new();
            draw_rows(&mut Rng::new(5, Stream::Noise), n * k, out, |u| {
                want.extend(u.iter().map(|&x| if x > p { masks.scale } else { 0.0 }))
            });
            let mut got = Vec::new();
            let mut row = vec![0f32; out];
            for e in 0..n {
                for i in 0..k {
                    masks.row(e, i, &mut row);
                    got.extend_from_slice(&row);
                }
            }
            assert_eq!(got, want, "out {out}, p {p}");
        }
    }
}
