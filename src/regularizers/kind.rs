//! What a kind of regulariser is to the rest of the crate: a [`KindSpec`]
//! (name, formula, source, named parameters with their defaults, the
//! gradient paths that train it, its checks and its constructor), declared
//! in the kind's own file, and a [`Reg`], one kind with its parameters'
//! values, as settings files write it (`{ kind = "concrete-dropout",
//! p = 0.2, temperature = 0.1 }`) and as every run stores it.
//!
//! The registry of kinds is the `registry!` list in the module above; this
//! file knows no kind by name.

use std::fmt;
use std::str::FromStr;

use candle_core::{Device, Result};
use serde::de::{self, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Identity, RegKind, Regularizer};

/// The most parameters a kind has, `p` included.
pub const MAX_PARAMS: usize = 4;

/// One named parameter of a kind.
#[derive(Debug)]
pub struct Param {
    pub name: &'static str,
    /// Its value when a settings file gives none; `None`: required.
    pub default: Option<f64>,
}

/// The strength every kind has and every settings file gives: a rate in
/// [0, 1], or a noise's standard deviation. 0 means no regularisation.
pub const P: Param = Param {
    name: "p",
    default: None,
};

/// A kind of regulariser, as its file declares it.
pub struct KindSpec {
    /// The name in settings files and on the command line.
    pub name: &'static str,
    /// The formula in one line, for `drop-exp kinds`.
    pub formula: &'static str,
    /// Where it comes from.
    pub source: &'static str,
    /// Whether the hand-written backward trains it (all its noise is
    /// stated as scale or shift noise on activations, or masks on whole
    /// weight matrices); otherwise only candle's autograd does.
    pub hand_written: bool,
    /// Its parameters, [`P`] first.
    pub params: &'static [Param],
    /// Checks beyond `p` in [0, 1] and every value finite; the message
    /// names the value, the accepted range and, where there is one, the fix.
    pub check: fn(&Reg) -> std::result::Result<(), String>,
    /// The regulariser at these values (already checked, `p` > 0), its
    /// learned parameters, if any, on the device.
    pub build: fn(&Reg, &Device) -> Result<Box<dyn Regularizer>>,
}

/// A check that accepts every value (the common checks still apply).
pub fn no_check(_: &Reg) -> std::result::Result<(), String> {
    Ok(())
}

/// Rejects p = 1 for kinds whose noise variance p/(1-p), or whose rate's
/// logit, is infinite there.
pub fn below_one(reg: &Reg) -> std::result::Result<(), String> {
    match reg.p() {
        1.0 => Err(format!(
            "p = 1 is not allowed for {} (its noise variance p/(1-p), or its rate's logit, is \
             infinite); use a value below 1",
            reg.kind()
        )),
        _ => Ok(()),
    }
}

impl KindSpec {
    fn index_of(&self, name: &str) -> Option<usize> {
        self.params.iter().position(|q| q.name == name)
    }

    /// The parameters as a reader needs them: `p, temperature (default 0.1)`.
    pub fn params_line(&self) -> String {
        let list: Vec<String> = self
            .params
            .iter()
            .map(|q| match q.default {
                Some(d) => format!("{} (default {})", q.name, fmt_value(d)),
                None => q.name.to_string(),
            })
            .collect();
        list.join(", ")
    }
}

/// A value as JSON writes it (1.0, 0.0001), so the listing reads like the
/// stored runs.
fn fmt_value(x: f64) -> String {
    serde_json::to_string(&x).unwrap_or_else(|_| x.to_string())
}

/// The regulariser of one hidden layer: its kind and that kind's own
/// parameters. Strength 0 means no regularisation, whatever the kind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reg {
    kind: RegKind,
    /// In the order of the kind's [`KindSpec::params`]; unused slots are 0.
    values: [f64; MAX_PARAMS],
}

impl RegKind {
    /// This kind at strength `p`, its other parameters at their defaults.
    pub fn with(self, p: f64) -> Reg {
        let mut values = [0.0; MAX_PARAMS];
        for (v, q) in values.iter_mut().zip(self.spec().params).skip(1) {
            *v = q.default.expect("only p is required");
        }
        values[0] = p;
        Reg { kind: self, values }
    }

    /// Whether the hand-written backward trains this kind.
    pub fn hand_written(self) -> bool {
        self.spec().hand_written
    }

    /// The names of the kinds the hand-written backward trains.
    pub fn hand_written_names() -> Vec<&'static str> {
        RegKind::ALL
            .iter()
            .filter(|k| k.hand_written())
            .map(|k| k.spec().name)
            .collect()
    }

    /// The kind's formula in one line and its source, for `drop-exp kinds`.
    pub fn summary(self) -> (&'static str, &'static str) {
        (self.spec().formula, self.spec().source)
    }

    /// Its place in the registry (stable while kinds are only appended).
    pub fn index(self) -> usize {
        RegKind::ALL
            .iter()
            .position(|&k| k == self)
            .expect("every kind is in ALL")
    }

    fn names() -> String {
        let names: Vec<_> = RegKind::ALL.iter().map(|k| k.spec().name).collect();
        names.join(", ")
    }
}

impl fmt::Display for RegKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.spec().name)
    }
}

impl FromStr for RegKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        RegKind::ALL
            .iter()
            .copied()
            .find(|k| k.spec().name == s)
            .ok_or_else(|| {
                format!(
                    "unknown regulariser `{s}`; expected one of {}",
                    RegKind::names()
                )
            })
    }
}

impl Serialize for RegKind {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.spec().name)
    }
}

impl<'de> Deserialize<'de> for RegKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(de::Error::custom)
    }
}

impl Reg {
    /// The kind, without its parameters.
    pub fn kind(&self) -> RegKind {
        self.kind
    }

    /// Whether the hand-written backward trains this regulariser.
    pub fn hand_written(&self) -> bool {
        self.kind.hand_written()
    }

    /// The strength `p` that every kind has.
    pub fn p(&self) -> f64 {
        self.values[0]
    }

    /// The value of the kind's parameter `name`. Panics if the kind has no
    /// such parameter (a kind's own file asks only for its own).
    pub fn get(&self, name: &str) -> f64 {
        let spec = self.kind.spec();
        let i = spec
            .index_of(name)
            .unwrap_or_else(|| panic!("{} has no parameter `{name}`", spec.name));
        self.values[i]
    }

    /// The parameters with their values, in the kind's order.
    pub fn values(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        self.kind
            .spec()
            .params
            .iter()
            .zip(self.values)
            .map(|(q, v)| (q.name, v))
    }

    /// Checks the parameters; the message names the kind, the value and
    /// the range.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let p = self.p();
        if !(0.0..=1.0).contains(&p) {
            return Err(format!("p = {p} is outside [0, 1]"));
        }
        for (name, v) in self.values() {
            if !v.is_finite() {
                return Err(format!(
                    "{} {name} = {v} must be a finite number",
                    self.kind
                ));
            }
        }
        (self.kind.spec().check)(self)
    }

    /// Builds the regulariser (parameters already validated), its learned
    /// parameters, if any, on `dev`.
    pub fn build(&self, dev: &Device) -> Result<Box<dyn Regularizer>> {
        match self.p() {
            0.0 => Ok(Box::new(Identity)),
            _ => (self.kind.spec().build)(self, dev),
        }
    }
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} p={}", self.kind, self.p())
    }
}

impl Serialize for Reg {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1 + self.kind.spec().params.len()))?;
        map.serialize_entry("kind", &self.kind)?;
        for (name, v) in self.values() {
            map.serialize_entry(name, &v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Reg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_map(RegVisitor)
    }
}

struct RegVisitor;

impl<'de> Visitor<'de> for RegVisitor {
    type Value = Reg;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "a table with `kind` (one of {}) and the kind's parameters",
            RegKind::names()
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Reg, A::Error> {
        let mut kind: Option<RegKind> = None;
        let mut given: Vec<(String, f64)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "kind" {
                kind = Some(map.next_value()?);
            } else if given.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format!("`{key}` is given twice")));
            } else {
                let v: f64 = map.next_value()?;
                given.push((key, v));
            }
        }
        let Some(kind) = kind else {
            return Err(de::Error::custom(format!(
                "a regulariser needs `kind`, one of {}",
                RegKind::names()
            )));
        };
        let spec = kind.spec();
        let mut reg = kind.with(0.0);
        let mut seen = [false; MAX_PARAMS];
        for (key, v) in given {
            let Some(i) = spec.index_of(&key) else {
                return Err(de::Error::custom(format!(
                    "{kind} has no parameter `{key}`; its parameters are {}",
                    spec.params_line()
                )));
            };
            reg.values[i] = v;
            seen[i] = true;
        }
        for (q, seen) in spec.params.iter().zip(seen) {
            if !seen && q.default.is_none() {
                return Err(de::Error::custom(format!(
                    "{kind} needs `{}`; its parameters are {}",
                    q.name,
                    spec.params_line()
                )));
            }
        }
        Ok(reg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::key::canonical_json;

    /// Every stored run's key holds its regulariser in these forms: the
    /// kind, then its parameters in the kind's order, defaults left out of
    /// the key. (Written by the enum this file replaced; a kind's
    /// parameters moving would change every stored key.)
    #[test]
    fn the_stored_forms_do_not_change() {
        let json = |k: RegKind| serde_json::to_string(&k.with(0.3)).unwrap();
        let key = |k: RegKind| canonical_json(&k.with(0.3)).unwrap();
        for &k in RegKind::ALL {
            if k.spec().params.len() == 1 {
                let want = format!(r#"{{"kind":"{k}","p":0.3}}"#);
                assert_eq!(json(k), want);
                assert_eq!(key(k), want);
            }
        }
        assert_eq!(
            json(RegKind::ConcreteDropout),
            r#"{"kind":"concrete-dropout","p":0.3,"temperature":0.1,"length_scale":0.0001}"#
        );
        assert_eq!(
            key(RegKind::ConcreteDropout),
            r#"{"kind":"concrete-dropout","p":0.3}"#
        );
        assert_eq!(
            json(RegKind::RDrop),
            r#"{"kind":"r-drop","p":0.3,"alpha":1.0}"#
        );
        assert_eq!(key(RegKind::RDrop), r#"{"kind":"r-drop","p":0.3}"#);
        let t = toml::to_string(&RegKind::RDrop.with(0.3)).unwrap();
        assert_eq!(t, "kind = \"r-drop\"\np = 0.3\nalpha = 1.0\n");
        for &k in RegKind::ALL {
            let r = k.with(0.3);
            let back: Reg = serde_json::from_str(&json(k)).unwrap();
            assert_eq!(back, r);
            let back: Reg = toml::from_str(&toml::to_string(&r).unwrap()).unwrap();
            assert_eq!(back, r);
        }
    }

    fn parse(s: &str) -> std::result::Result<Reg, String> {
        toml::from_str::<Reg>(s).map_err(|e| e.to_string())
    }

    /// A kind's parameters are read by name: missing ones take their
    /// defaults, `p` is required, and a wrong one is an error naming the
    /// kind, the key and the parameters it takes.
    #[test]
    fn parameters_are_named_and_checked() {
        let r = parse("kind = \"concrete-dropout\"\np = 0.2\ntemperature = 0.3").unwrap();
        assert_eq!(
            (r.p(), r.get("temperature"), r.get("length_scale")),
            (0.2, 0.3, 1e-4)
        );
        let e = parse("kind = \"concrete-dropout\"\np = 0.2\ntemp = 0.3").unwrap_err();
        assert!(
            e.contains("concrete-dropout has no parameter `temp`")
                && e.contains("p, temperature (default 0.1), length_scale (default 0.0001)"),
            "{e}"
        );
        let e = parse("kind = \"dropout\"\np = 0.2\nalpha = 1").unwrap_err();
        assert!(
            e.contains("dropout has no parameter `alpha`; its parameters are p"),
            "{e}"
        );
        let e = parse("kind = \"r-drop\"\nalpha = 1.0").unwrap_err();
        assert!(e.contains("r-drop needs `p`"), "{e}");
        let e = parse("p = 0.2").unwrap_err();
        assert!(
            e.contains("needs `kind`, one of dropout, dropconnect"),
            "{e}"
        );
        let e = parse("kind = \"drop-out\"\np = 0.2").unwrap_err();
        assert!(
            e.contains("unknown regulariser `drop-out`; expected one of"),
            "{e}"
        );
        let e = parse("kind = \"r-drop\"\np = 0.2\nalpha = \"big\"").unwrap_err();
        assert!(e.contains("alpha") || e.contains("f64"), "{e}");
        let e = parse("kind = \"r-drop\"\np = 0.2\nalpha = -1.0")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e, "r-drop alpha = -1 must be at least 0");
        let e = RegKind::ConcreteDropout.with(1.0).validate().unwrap_err();
        assert!(
            e.contains("p = 1 is not allowed for concrete-dropout"),
            "{e}"
        );
    }
}
