//! DropConnect on the weights that *consume* the hidden layer (W2 for
//! hidden layer 1, W3 for hidden layer 2): the matrix whose whole rows
//! dropout zeroes when it drops a unit, here masked weight by weight, one
//! mask per mini-batch, scaled by 1 / (1 - p). The other reading of
//! "dropout on individual weights" beside `dropconnect` (which masks the
//! matrix that produces the layer); see that file for the mask itself.

use candle_core::{Device, Result, Shape, Tensor};

use super::dropconnect::DropConnect;
use super::kind::{no_check, KindSpec, P};
use super::{NoiseCtx, Regularizer};

pub static SPEC: KindSpec = KindSpec {
    name: "dropconnect-out",
    formula: "W' = W M / (1-p) on the consuming weights, one M per mini-batch",
    source: "Wan et al. 2013 (mask shared by the batch)",
    hand_written: true,
    params: &[P],
    check: no_check,
    build: |r, _| Ok(Box::new(DropConnectOut::new(r.p()))),
};

#[derive(Debug, Clone, Copy)]
pub struct DropConnectOut {
    inner: DropConnect,
}

impl DropConnectOut {
    pub fn new(p: f64) -> Self {
        Self {
            inner: DropConnect::new(p),
        }
    }
}

impl Regularizer for DropConnectOut {
    fn outgoing_weight_mask(
        &self,
        shape: &Shape,
        dev: &Device,
        ctx: &mut NoiseCtx,
    ) -> Result<Option<Tensor>> {
        self.inner.weight_mask(shape, dev, ctx)
    }
}
