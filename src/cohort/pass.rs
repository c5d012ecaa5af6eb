//! One half-batch's forward and backward pass for every run of a cohort,
//! on buffers that live as long as the cohort.

use anyhow::Result;
use candle_core::{Device, Tensor, D};

use super::{Act, Params, C, H1, H2, IN};
use crate::train::count_correct;

/// What one step's half-batch passes read.
pub(super) struct Step<'a> {
    /// The batch's images, [n, IN], and labels.
    pub(super) x: &'a [f32],
    pub(super) labels: &'a [u32],
    /// One-hot labels, [n, C].
    pub(super) onehot: &'a [f32],
    /// The first layer's used weights, [IN, R x H1].
    pub(super) w1: &'a [f32],
    pub(super) runs: &'a [&'a Params],
    pub(super) ones: &'a [f32],
    /// Rows in the batch.
    pub(super) n: usize,
}

/// Buffers of one half-batch: the first layer's for all runs side by side
/// ([rows, R x H1]; its weight gradient [IN, R x H1]), the rest per run.
#[derive(Default)]
pub(super) struct Half {
    pub(super) h1: Vec<f32>,
    pub(super) g1: Vec<f32>,
    pub(super) d1: Vec<f32>,
    pub(super) gw1: Vec<f32>,
    pub(super) runs: Vec<RunHalf>,
}

#[derive(Default)]
pub(super) struct RunHalf {
    pub(super) h2: Vec<f32>,
    pub(super) g2: Vec<f32>,
    pub(super) logits: Vec<f32>,
    pub(super) d2: Vec<f32>,
    pub(super) gw2: Vec<f32>,
    pub(super) gw3: Vec<f32>,
    pub(super) gb1: Vec<f32>,
    pub(super) gb2: Vec<f32>,
    pub(super) gb3: Vec<f32>,
    pub(super) loss: f32,
    pub(super) correct: f32,
}

impl Half {
    pub(super) fn resize(&mut self, rows: usize, r: usize) {
        let rw = r * H1;
        for (v, len) in [
            (&mut self.h1, rows * rw),
            (&mut self.g1, rows * rw),
            (&mut self.d1, rows * rw),
            (&mut self.gw1, IN * rw),
        ] {
            v.resize(len, 0.0);
        }
        self.runs.resize_with(r, RunHalf::default);
        for h in &mut self.runs {
            for (v, len) in [
                (&mut h.h2, rows * H2),
                (&mut h.g2, rows * H2),
                (&mut h.logits, rows * C),
                (&mut h.d2, rows * H2),
                (&mut h.gw2, H1 * H2),
                (&mut h.gw3, H2 * C),
                (&mut h.gb1, H1),
                (&mut h.gb2, H2),
                (&mut h.gb3, C),
            ] {
                v.resize(len, 0.0);
            }
        }
    }

    /// Forward and backward pass of rows `start..start + len` of the batch
    /// for every live run: logits, the rows' share of the loss and each
    /// layer's (unmasked) weight and bias gradient.
    pub(super) fn pass(&mut self, s: &Step, start: usize, len: usize) -> Result<()> {
        let rw = s.runs.len() * H1;
        let x = &s.x[start * IN..(start + len) * IN];
        // z1 = x W1 for all runs at once.
        matmul(len, rw, IN, &mut self.h1, rw, x, IN, 1, s.w1, rw, 1);
        for (col, p) in s.runs.iter().enumerate() {
            if !p.live {
                continue;
            }
            hidden(
                &mut self.h1,
                &mut self.g1,
                rw,
                col * H1,
                len,
                H1,
                &p.b1,
                &p.act[0],
                start,
            );
        }
        let ones = &s.ones[..len];
        for (col, p) in s.runs.iter().enumerate() {
            if !p.live {
                continue;
            }
            let h1 = &self.h1[col * H1..];
            let r = &mut self.runs[col];
            // Layer 2.
            matmul(len, H2, H1, &mut r.h2, H2, h1, rw, 1, p.w2_used(), H2, 1);
            hidden(
                &mut r.h2, &mut r.g2, H2, 0, len, H2, &p.b2, &p.act[1], start,
            );
            // Output layer, then the loss and its gradient with candle.
            matmul(
                len,
                C,
                H2,
                &mut r.logits,
                C,
                &r.h2,
                H2,
                1,
                p.w3_used(),
                C,
                1,
            );
            for row in r.logits[..len * C].chunks_exact_mut(C) {
                for (z, b) in row.iter_mut().zip(&p.b3) {
                    *z += *b;
                }
            }
            let (loss, d3, correct) = output_loss(&r.logits[..len * C], s, start, len)?;
            r.loss = loss;
            r.correct = correct;
            // Backward.
            matmul(H2, C, len, &mut r.gw3, C, &r.h2, 1, H2, &d3, C, 1);
            matmul(1, C, len, &mut r.gb3, C, ones, len, 1, &d3, C, 1);
            matmul(len, H2, C, &mut r.d2, H2, &d3, C, 1, p.w3_used(), 1, C);
            gate(&mut r.d2, &r.g2, H2, 0, len, H2);
            matmul(H1, H2, len, &mut r.gw2, H2, h1, 1, rw, &r.d2, H2, 1);
            matmul(1, H2, len, &mut r.gb2, H2, ones, len, 1, &r.d2, H2, 1);
            let d1 = &mut self.d1[col * H1..];
            matmul(len, H1, H2, d1, rw, &r.d2, H2, 1, p.w2_used(), 1, H2);
            gate(&mut self.d1, &self.g1, rw, col * H1, len, H1);
            matmul(
                1,
                H1,
                len,
                &mut r.gb1,
                H1,
                ones,
                len,
                1,
                &self.d1[col * H1..],
                rw,
                1,
            );
        }
        // dW1 = x^T d1 for all runs at once.
        matmul(IN, rw, len, &mut self.gw1, rw, x, 1, IN, &self.d1, rw, 1);
        Ok(())
    }
}

/// The output layer's loss with candle, exactly as the step-by-step trainer
/// computes it: the rows' share of the batch's mean cross-entropy, its
/// gradient with respect to the logits, and the count of correct rows.
fn output_loss(logits: &[f32], s: &Step, start: usize, len: usize) -> Result<(f32, Vec<f32>, f32)> {
    let dev = Device::Cpu;
    let logits = Tensor::from_slice(logits, (len, C), &dev)?;
    let y = Tensor::from_slice(&s.onehot[start * C..(start + len) * C], (len, C), &dev)?;
    let ys = Tensor::from_slice(&s.labels[start..start + len], len, &dev)?;
    let log_p = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let scale = 1.0 / s.n as f64;
    let loss = (y.mul(&log_p)?.sum_all()? * -scale)?.to_scalar::<f32>()?;
    let d = ((log_p.exp()? - y)? * scale)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let correct = count_correct(&logits, &ys)?.to_scalar::<f32>()?;
    Ok((loss, d, correct))
}

/// Bias, ReLU and noise of a hidden layer in one pass, in place: on entry
/// `z` holds x W in columns `off..off + width` of rows with stride `ld`; on
/// exit those hold the layer's output and `gate` holds relu'(z) times the
/// multiplicative noise (what the backward pass multiplies by).
#[allow(clippy::too_many_arguments)]
fn hidden(
    z: &mut [f32],
    gate: &mut [f32],
    ld: usize,
    off: usize,
    rows: usize,
    width: usize,
    bias: &[f32],
    act: &Act,
    start: usize,
) {
    // candle's relu and sign, element by element.
    let relu_on = |z: f32, b: f32| {
        let relu = (z + b).max(0f32);
        (relu, f32::from(relu > 0.) - f32::from(relu < 0.))
    };
    for i in 0..rows {
        let at = i * ld + off;
        let zs = &mut z[at..at + width];
        let gs = &mut gate[at..at + width];
        let noise = (start + i) * width..(start + i + 1) * width;
        match act {
            Act::None => {
                for ((z, g), b) in zs.iter_mut().zip(gs.iter_mut()).zip(bias) {
                    (*z, *g) = relu_on(*z, *b);
                }
            }
            Act::Scale(m) => {
                let m = &m[noise];
                for (((z, g), b), m) in zs.iter_mut().zip(gs.iter_mut()).zip(bias).zip(m) {
                    let (relu, on) = relu_on(*z, *b);
                    (*z, *g) = (relu * m, on * m);
                }
            }
            Act::Shift(a) => {
                let a = &a[noise];
                for (((z, g), b), a) in zs.iter_mut().zip(gs.iter_mut()).zip(bias).zip(a) {
                    let (relu, on) = relu_on(*z, *b);
                    (*z, *g) = (relu + a, on);
                }
            }
        }
    }
}

/// d *= gate in columns `off..off + width` of rows with stride `ld`.
fn gate(d: &mut [f32], gate: &[f32], ld: usize, off: usize, rows: usize, width: usize) {
    for i in 0..rows {
        let at = i * ld + off;
        for (d, g) in d[at..at + width].iter_mut().zip(&gate[at..at + width]) {
            *d *= g;
        }
    }
}

/// dst = lhs . rhs for an [m, k] by [k, n] product, each matrix given by a
/// row and a column stride in elements (dst's column stride is 1): the
/// `gemm` call candle's CPU matmul makes (overwriting dst, one thread).
#[allow(clippy::too_many_arguments)]
fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    lhs: &[f32],
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: &[f32],
    rhs_rs: usize,
    rhs_cs: usize,
) {
    let extent = |rows: usize, cols: usize, rs: usize, cs: usize| {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * rs + (cols - 1) * cs + 1
        }
    };
    assert!(
        extent(m, n, dst_rs, 1) <= dst.len(),
        "matmul: dst too short"
    );
    assert!(
        extent(m, k, lhs_rs, lhs_cs) <= lhs.len(),
        "matmul: lhs too short"
    );
    assert!(
        extent(k, n, rhs_rs, rhs_cs) <= rhs.len(),
        "matmul: rhs too short"
    );
    // SAFETY: the asserts above keep every element gemm touches, at the
    // given strides, inside the slices; dst does not alias lhs or rhs (it
    // is borrowed mutably).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            false,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            0f32,
            1f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}
