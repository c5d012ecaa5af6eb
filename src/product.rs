//! Batched matrix products for the passes that need no autograd: on the
//! CPU, candle's own product (the same `gemm` call with the same strides,
//! splits and threads, so the same bits) writing into a buffer it does not
//! zero-fill first; elsewhere candle's `matmul`.
//!
//! candle allocates each product's output as a zeroed vector, and `gemm`
//! then overwrites every element (it does not read the destination). On
//! the fast path's step that zero-filling was most of the instructions the
//! candle-tensor trainer added over the host-buffer one (see
//! docs/performance.md).

use candle_core::{CpuStorage, CustomOp2, Device, Layout, Result, Shape, Tensor};

/// `a` [b, m, k] times `b` [b, k, n]: [b, m, n]. Either may be a strided
/// view (a transpose, a stride-0 batch) that candle's product accepts.
/// Carries no gradient: a tensor tracked for autograd is an error.
pub fn product(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    match a.device() {
        Device::Cpu if a.rank() == 3 => a.apply_op2(b, Product),
        _ => a.matmul(b),
    }
}

struct Product;

impl CustomOp2 for Product {
    fn name(&self) -> &'static str {
        "product"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (CpuStorage::F32(lhs), CpuStorage::F32(rhs)) = (s1, s2) else {
            candle_core::bail!("product: f32 tensors only");
        };
        let (b, m, k) = l1.shape().dims3()?;
        let (b2, k2, n) = l2.shape().dims3()?;
        if (b, k) != (b2, k2) {
            candle_core::bail!(
                "product: shapes {:?} and {:?} do not multiply",
                l1.shape(),
                l2.shape()
            );
        }
        let len = b * m * n;
        if k == 0 || len == 0 {
            // Nothing for gemm to write: the empty sum is 0, as candle's.
            return Ok((CpuStorage::F32(vec![0.0; len]), Shape::from((b, m, n))));
        }
        let (ls, rs) = (l1.stride(), l2.stride());
        // As candle's rank-3 product: one batch step per stride of dim 0.
        let (a_skip, b_skip, c_skip) = (ls[0], rs[0], m * n);
        let lhs = &lhs[l1.start_offset()..];
        let rhs = &rhs[l2.start_offset()..];
        let threads = candle_core::utils::get_num_threads();
        let parallelism = match threads > 1 {
            true => gemm::Parallelism::Rayon(threads),
            false => gemm::Parallelism::None,
        };
        // A batch-invariant rhs: the batches of lhs stack into the rows of
        // one (b m, k) matrix, as candle folds them.
        let (steps, rows) = match b_skip == 0 && a_skip == m * k {
            true => (1, b * m),
            false => (b, m),
        };
        let mut dst: Vec<f32> = Vec::with_capacity(len);
        let out = dst.as_mut_ptr();
        for step in 0..steps {
            // SAFETY: the pointers stay inside the slices' and the
            // destination's allocations (candle's own offsets); gemm with
            // read_dst = false writes each destination element once
            // before the vector's length covers it.
            unsafe {
                gemm::gemm(
                    rows,
                    n,
                    k,
                    out.add(step * c_skip),
                    1,
                    n as isize,
                    false,
                    lhs[step * a_skip..].as_ptr(),
                    ls[2] as isize,
                    ls[1] as isize,
                    rhs[step * b_skip..].as_ptr(),
                    rs[2] as isize,
                    rs[1] as isize,
                    0f32,
                    1f32,
                    false,
                    false,
                    false,
                    parallelism,
                );
            }
        }
        // SAFETY: every element was written above.
        unsafe { dst.set_len(len) };
        Ok((CpuStorage::F32(dst), Shape::from((b, m, n))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    /// The same bits as candle's product, for the views the fast path
    /// multiplies: plain, transposed, and a stride-0 batch on either side.
    #[test]
    fn the_same_bits_as_candles_product() {
        let dev = Device::Cpu;
        let t = |shape: (usize, usize, usize), seed: f32| {
            let n = shape.0 * shape.1 * shape.2;
            let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37 + seed).sin()).collect();
            Tensor::from_vec(v, shape, &dev).unwrap()
        };
        let bits = |x: &Tensor| -> Vec<u32> {
            let v: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
            v.into_iter().map(f32::to_bits).collect()
        };
        let a = t((3, 37, 53), 1.0);
        let b = t((3, 53, 29), 2.0);
        let shared = t((1, 37, 53), 3.0).broadcast_as((3, 37, 53)).unwrap();
        let w_t = t((3, 29, 53), 4.0).transpose(1, 2).unwrap();
        let x_t = t((1, 53, 37), 5.0)
            .squeeze(0)
            .unwrap()
            .t()
            .unwrap()
            .broadcast_as((3, 37, 53))
            .unwrap();
        let rhs_shared = t((1, 53, 29), 6.0).broadcast_as((3, 53, 29)).unwrap();
        for (l, r) in [
            (&a, &b),
            (&shared, &b),
            (&a, &w_t),
            (&x_t, &b),
            (&a, &rhs_shared),
        ] {
            let want = l.matmul(r).unwrap();
            let got = product(l, r).unwrap();
            assert_eq!(got.dims(), want.dims());
            assert_eq!(got.dtype(), DType::F32);
            assert_eq!(bits(&got), bits(&want));
        }
        let v = candle_core::Var::from_tensor(&a).unwrap();
        let y = product(v.as_tensor(), &b).unwrap();
        assert!(
            y.sum_all().unwrap().backward().is_err(),
            "no silent gradient"
        );
    }
}
