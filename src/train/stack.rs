//! The parameters of a stack of runs, side by side, and the SGD step.

use candle_core::{Device, Result, Tensor};

use crate::model::{Mlp, StackLayer};

/// A factor that may differ between the runs of a stack (a learning rate, a
/// decay). One number when every run has the same: the step is then
/// candle's `affine`, exactly as for a run trained alone. Otherwise a
/// [R, 1, 1] tensor multiplied in, which differs from `affine` (x * f + 0)
/// only in the sign of an exact zero product, and only where the weight
/// it is subtracted from is itself -0 (which no initialisation or step
/// here produces).
#[derive(Debug)]
enum Factor {
    Same(f64),
    Each(Tensor),
}

impl Factor {
    fn new(values: &[f64], dev: &Device) -> Result<Self> {
        if values.iter().all(|v| *v == values[0]) {
            return Ok(Factor::Same(values[0]));
        }
        let f: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        Ok(Factor::Each(Tensor::from_vec(
            f,
            (values.len(), 1, 1),
            dev,
        )?))
    }

    fn times(&self, t: &Tensor) -> Result<Tensor> {
        match self {
            Factor::Same(f) => t.affine(*f, 0.0),
            Factor::Each(f) => t.broadcast_mul(f),
        }
    }
}

/// The rules of one run's SGD step.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sgd {
    pub(super) lr: f64,
    pub(super) weight_decay: f64,
}

/// R runs' parameters as [R, in, out] weights and [R, 1, out] biases, and
/// their SGD rules.
pub(super) struct Stack {
    pub(super) params: Vec<(Tensor, Tensor)>,
    lr: Factor,
    /// 1 - lr wd per run, when some run decays its weights.
    decay: Option<Factor>,
    rules: Vec<Sgd>,
}

impl Stack {
    /// The stack of `models` (weights as they are now), with their rules.
    pub(super) fn new(models: &[&Mlp], rules: Vec<Sgd>) -> Result<Self> {
        let layers = models[0].layers.len();
        let params = (0..layers)
            .map(|i| {
                let w: Vec<Tensor> = models
                    .iter()
                    .map(|m| m.layers[i].w.as_tensor().clone())
                    .collect();
                let b: Vec<Tensor> = models
                    .iter()
                    .map(|m| m.layers[i].b.as_tensor().unsqueeze(0))
                    .collect::<Result<_>>()?;
                // Detached: the trainer differentiates by hand, and a tensor
                // tracked for autograd would keep every step's graph alive.
                Ok((
                    Tensor::stack(&w, 0)?.detach(),
                    Tensor::stack(&b, 0)?.detach(),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let dev = params[0].0.device().clone();
        Self::with_params(params, rules, &dev)
    }

    fn with_params(params: Vec<(Tensor, Tensor)>, rules: Vec<Sgd>, dev: &Device) -> Result<Self> {
        let lrs: Vec<f64> = rules.iter().map(|s| s.lr).collect();
        let decay = match rules.iter().any(|s| s.weight_decay != 0.0) {
            true => {
                let d: Vec<f64> = rules.iter().map(|s| 1.0 - s.lr * s.weight_decay).collect();
                Some(Factor::new(&d, dev)?)
            }
            false => None,
        };
        Ok(Self {
            params,
            lr: Factor::new(&lrs, dev)?,
            decay,
            rules,
        })
    }

    pub(super) fn len(&self) -> usize {
        self.rules.len()
    }

    /// The stack without the runs not in `keep` (positions, in order).
    pub(super) fn keep(self, keep: &[usize]) -> Result<Self> {
        if keep.len() == self.len() {
            return Ok(self);
        }
        let dev = self.params[0].0.device().clone();
        let idx = Tensor::from_vec(keep.iter().map(|&k| k as u32).collect(), keep.len(), &dev)?;
        let params = self
            .params
            .iter()
            .map(|(w, b)| Ok((w.index_select(&idx, 0)?, b.index_select(&idx, 0)?)))
            .collect::<Result<Vec<_>>>()?;
        let rules = keep.iter().map(|&k| self.rules[k]).collect();
        Self::with_params(params, rules, &dev)
    }

    /// The SGD step, per run: w <- w (1 - lr wd) - lr g, b <- b - lr g,
    /// with layer `i`'s gradients from `grads(i)`. With `parallel`, the
    /// first layer (three quarters of the parameters) is updated on one
    /// thread while the others are on a second.
    pub(super) fn sgd<G>(&mut self, grads: G, parallel: bool) -> Result<()>
    where
        G: Fn(usize) -> Result<(Tensor, Tensor)> + Sync,
    {
        let this = &*self;
        let step = |i: usize| -> Result<(Tensor, Tensor)> {
            let (gw, gb) = grads(i)?;
            let (w, b) = &this.params[i];
            let kept = match &this.decay {
                Some(d) => d.times(w)?,
                None => w.clone(),
            };
            Ok(((kept - this.lr.times(&gw)?)?, (b - this.lr.times(&gb)?)?))
        };
        let rest = || (1..this.params.len()).map(step).collect::<Result<Vec<_>>>();
        let (first, rest) = super::both(parallel, || step(0), rest);
        self.params = std::iter::once(first?).chain(rest?).collect();
        Ok(())
    }

    /// The stack's layers for an evaluation pass: no noise.
    pub(super) fn layers(&self) -> Vec<StackLayer> {
        self.params
            .iter()
            .map(|(w, b)| StackLayer {
                w: w.clone(),
                b: b.clone(),
                scale: None,
                shift: None,
            })
            .collect()
    }

    /// Writes run `k`'s parameters into `model`.
    pub(super) fn write_to(&self, k: usize, model: &Mlp) -> Result<()> {
        for ((w, b), layer) in self.params.iter().zip(&model.layers) {
            layer.w.set(&w.get(k)?)?;
            layer.b.set(&b.get(k)?.squeeze(0)?)?;
        }
        Ok(())
    }
}
