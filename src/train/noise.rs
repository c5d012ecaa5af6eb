//! A step's noise for a stack: each run draws its own, from its own stream
//! ([`crate::model::Mlp::draw_noise`]), and the draws are laid side by side
//! as [R, ...] tensors. A run without a kind of noise the others have gets
//! the identity in its place (a mask of ones, a shift of zeros), so one
//! batched operation serves the whole stack.

use candle_core::{Result, Tensor};

use crate::model::{LayerNoise, WIDTHS};
use crate::regularizers::ActivationNoise;

/// The noise of one step for every run of a stack, per layer.
pub(super) struct StepNoise {
    /// Per layer: the weight masks, [R, in, out], if any run masks.
    pub(super) w_masks: Vec<Option<Tensor>>,
    /// Per run, per layer: its activation noise for the whole batch.
    act: Vec<Vec<Option<ActivationNoise>>>,
}

/// Activation noise of one layer for rows of a batch, for every run.
pub(super) struct HalfNoise {
    pub(super) scale: Option<Tensor>,
    pub(super) shift: Option<Tensor>,
}

impl StepNoise {
    /// Lays out `drawn` (per run, per layer, as drawn).
    pub(super) fn new(drawn: Vec<Vec<LayerNoise>>) -> Result<Self> {
        let layers = WIDTHS.len() - 1;
        let mut masks: Vec<Vec<Option<Tensor>>> = vec![Vec::new(); layers];
        let mut act = Vec::with_capacity(drawn.len());
        for run in drawn {
            let mut run_act = Vec::with_capacity(layers);
            for (i, layer) in run.into_iter().enumerate() {
                masks[i].push(layer.w_mask);
                run_act.push(layer.noise);
            }
            act.push(run_act);
        }
        let w_masks = masks
            .into_iter()
            .enumerate()
            .map(|(i, m)| side_by_side(m, (WIDTHS[i], WIDTHS[i + 1]), 1.0))
            .collect::<Result<_>>()?;
        Ok(Self { w_masks, act })
    }

    /// Layer `layer`'s activation noise for rows `start..start + len`.
    pub(super) fn rows(&self, layer: usize, start: usize, len: usize) -> Result<HalfNoise> {
        let pick = |want_scale: bool| -> Result<Vec<Option<Tensor>>> {
            self.act
                .iter()
                .map(|run| match (&run[layer], want_scale) {
                    (Some(ActivationNoise::Scale(m)), true)
                    | (Some(ActivationNoise::Shift(m)), false) => m.narrow(0, start, len).map(Some),
                    _ => Ok(None),
                })
                .collect()
        };
        let shape = (len, WIDTHS[layer + 1]);
        Ok(HalfNoise {
            scale: side_by_side(pick(true)?, shape, 1.0)?,
            shift: side_by_side(pick(false)?, shape, 0.0)?,
        })
    }
}

/// One [R, ...] tensor from the runs' tensors of `shape`, `identity` filling
/// in for runs without one; `None` when no run has one. A stack of one is a
/// view, not a copy.
fn side_by_side(
    per_run: Vec<Option<Tensor>>,
    shape: (usize, usize),
    identity: f64,
) -> Result<Option<Tensor>> {
    let Some(dev) = per_run.iter().flatten().next().map(|t| t.device().clone()) else {
        return Ok(None);
    };
    if let [Some(only)] = per_run.as_slice() {
        return only.unsqueeze(0).map(Some);
    }
    let fill = Tensor::full(identity as f32, shape, &dev)?;
    let all: Vec<Tensor> = per_run
        .into_iter()
        .map(|t| t.unwrap_or(fill.clone()))
        .collect();
    Tensor::stack(&all, 0).map(Some)
}
