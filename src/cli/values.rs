//! Value parsers for flags: each rejects a bad value with a message that
//! clap prefixes with the flag's name.

use crate::device::DeviceKind;
use crate::regularizers::RegKind;

pub(super) fn device_parser() -> impl clap::builder::TypedValueParser<Value = DeviceKind> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["cpu", "cuda"])
        .map(|s| s.parse::<DeviceKind>().expect("a listed value"))
}

pub(super) fn parse_f64(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .map_err(|_| format!("`{s}` is not a number"))
}

/// A probability in [0, 1] (NaN rejected).
pub(super) fn parse_prob(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{s} is outside [0, 1]; a dropout probability must be between 0 and 1"
        ))
    }
}

/// A finite number > 0.
pub(super) fn parse_positive(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!("{s} must be a finite number greater than 0"))
    }
}

/// A finite number >= 0.
pub(super) fn parse_nonnegative(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("{s} must be a finite number of at least 0"))
    }
}

pub(super) fn parse_reg(s: &str) -> Result<RegKind, String> {
    s.parse()
}

/// `KEY=VALUE` with a TOML value, as a one-key table.
pub(super) fn parse_setting(s: &str) -> Result<toml::Table, String> {
    toml::from_str(s).map_err(|e| {
        format!(
            "`{s}` is not KEY = VALUE in TOML (strings in quotes, lists in brackets): {}",
            e.message()
        )
    })
}
