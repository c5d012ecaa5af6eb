//! The configuration keys that `drop-exp run` offers as flags of their own,
//! written once: each flag's name, help, value range and what it sets.

use crate::config::{Backward, TrainConfig};
use crate::regularizers::RegKind;

/// How a run flag's value is read and where it goes in a configuration.
#[derive(Clone, Copy)]
pub enum FlagSetter {
    /// A regulariser kind.
    Reg(fn(&mut TrainConfig, RegKind)),
    /// A number of the given range.
    Number(NumberRange, fn(&mut TrainConfig, f64)),
    /// A whole number of at least 1.
    Count(fn(&mut TrainConfig, usize)),
    /// A gradient path.
    Backward(fn(&mut TrainConfig, Backward)),
}

/// The range a numeric flag accepts (checked when the flag is parsed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberRange {
    /// [0, 1].
    Probability,
    /// Finite, > 0.
    Positive,
    /// Finite, >= 0.
    NonNegative,
}

/// A configuration key that `drop-exp run` offers as a flag of its own:
/// the one place such a flag is written. The flag, its help (with the
/// default read from experiments/defaults.toml) and how it changes the
/// configuration all come from here.
pub struct RunFlag {
    pub long: &'static str,
    pub help: &'static str,
    pub setter: FlagSetter,
    /// The value in a configuration, as the help's default shows it.
    pub show: fn(&TrainConfig) -> String,
}

/// The flags of `drop-exp run`, applied in this order after `--config` and
/// `--set`.
pub const RUN_FLAGS: &[RunFlag] = &[
    RunFlag {
        long: "reg",
        help: "Regulariser of both hidden layers (keeping their strengths)",
        setter: FlagSetter::Reg(|c, kind| c.layers = c.layers.map(|l| kind.with(l.p()))),
        show: |c| c.layers[0].kind().to_string(),
    },
    RunFlag {
        long: "p1",
        help: "Strength (for dropout: drop probability) after the first hidden layer, in [0, 1]",
        setter: FlagSetter::Number(NumberRange::Probability, |c, p| {
            c.layers[0] = c.layers[0].kind().with(p)
        }),
        show: |c| c.layers[0].p().to_string(),
    },
    RunFlag {
        long: "p2",
        help: "Strength (for dropout: drop probability) after the second hidden layer, in [0, 1]",
        setter: FlagSetter::Number(NumberRange::Probability, |c, p| {
            c.layers[1] = c.layers[1].kind().with(p)
        }),
        show: |c| c.layers[1].p().to_string(),
    },
    RunFlag {
        long: "epochs",
        help: "Number of passes over the training set",
        setter: FlagSetter::Count(|c, n| c.epochs = n),
        show: |c| c.epochs.to_string(),
    },
    RunFlag {
        long: "lr",
        help: "SGD learning rate (> 0)",
        setter: FlagSetter::Number(NumberRange::Positive, |c, v| c.lr = v),
        show: |c| c.lr.to_string(),
    },
    RunFlag {
        long: "batch-size",
        help: "Mini-batch size; the last, partial batch of an epoch is kept",
        setter: FlagSetter::Count(|c, n| c.batch_size = n),
        show: |c| c.batch_size.to_string(),
    },
    RunFlag {
        long: "weight-decay",
        help: "L2 penalty lambda on the weights (not biases): loss + lambda/2 * ||w||^2",
        setter: FlagSetter::Number(NumberRange::NonNegative, |c, v| c.weight_decay = v),
        show: |c| c.weight_decay.to_string(),
    },
    RunFlag {
        long: "backward",
        help: "Gradient path: auto (the hand-written backward where it covers the regularisers, \
               else candle's autograd), hand, or autograd",
        setter: FlagSetter::Backward(|c, b| c.backward = b),
        show: |c| c.backward.to_string(),
    },
];
