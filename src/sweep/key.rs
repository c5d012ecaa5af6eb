//! The cache key's canonical form: a configuration as JSON with its keys
//! sorted and every field left out that the type fills in by itself at
//! that value, so a field added later, at its default, keeps every stored
//! run's key.

use anyhow::Result;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::record::RunSpec;

/// The canonical JSON of `value` as a `T`, for cache keys: object keys
/// sorted, and every field that `T` fills in by itself when it is absent
/// (`#[serde(default)]`) left out while it holds that default. So a field
/// added to `T` later, at its default, leaves every existing key unchanged.
pub fn canonical_json<T: Serialize + DeserializeOwned>(value: &T) -> Result<String> {
    let full = serde_json::to_value(value)?;
    let mut out = full.clone();
    for path in field_paths(&full) {
        let mut without = full.clone();
        remove_at(&mut without, &path);
        let refilled = serde_json::from_value::<T>(without)
            .ok()
            .map(|t| serde_json::to_value(t))
            .transpose()?;
        if refilled.as_ref() == Some(&full) {
            remove_at(&mut out, &path);
        }
    }
    Ok(sorted(&out).to_string())
}

/// A step into a JSON value: an object key or an array index.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// The paths of every object field in `v`, depth first.
fn field_paths(v: &Value) -> Vec<Vec<Step>> {
    fn walk(v: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    at.push(Step::Key(k.clone()));
                    out.push(at.clone());
                    walk(x, at, out);
                    at.pop();
                }
            }
            Value::Array(xs) => {
                for (i, x) in xs.iter().enumerate() {
                    at.push(Step::Index(i));
                    walk(x, at, out);
                    at.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn remove_at(v: &mut Value, path: &[Step]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for step in parents {
        cur = match (step, cur) {
            (Step::Key(k), Value::Object(m)) => match m.get_mut(k) {
                Some(x) => x,
                None => return,
            },
            (Step::Index(i), Value::Array(xs)) => match xs.get_mut(*i) {
                Some(x) => x,
                None => return,
            },
            _ => return,
        };
    }
    if let (Step::Key(k), Value::Object(m)) = (last, cur) {
        m.shift_remove(k);
    }
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(xs) => Value::Array(xs.iter().map(sorted).collect()),
        x => x.clone(),
    }
}

impl RunSpec {
    /// The cache key: configuration (in its canonical form, see
    /// [`canonical_json`]), seed, data and trainer revision,
    /// nothing else (not the label, the thread count or the job count, which
    /// do not change results).
    pub(crate) fn key(&self, data_digest: &str) -> String {
        let mut h = Sha256::new();
        h.update(canonical_json(&self.config.identity()).expect("config serialises"));
        h.update(self.seed.to_le_bytes());
        h.update(data_digest.as_bytes());
        h.update(crate::train::TRAINER_REVISION.to_le_bytes());
        // The first 10 bytes, as 20 hex digits.
        format!("{:x}", h.finalize())[..20].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize)]
    struct Before {
        lr: f64,
        layers: Vec<Layer>,
    }
    #[derive(Serialize, Deserialize)]
    struct Layer {
        p: f64,
    }
    /// `Before` with a field added at the top and one inside the layers, as a
    /// later version of [`TrainConfig`] might.
    #[derive(Serialize, Deserialize)]
    struct After {
        lr: f64,
        layers: Vec<LayerAfter>,
        #[serde(default)]
        momentum: f64,
    }
    #[derive(Serialize, Deserialize)]
    struct LayerAfter {
        p: f64,
        #[serde(default = "one")]
        scale: f64,
    }
    fn one() -> f64 {
        1.0
    }

    #[test]
    fn new_fields_at_their_default_keep_the_key() {
        let before = Before {
            lr: 0.5,
            layers: vec![Layer { p: 0.2 }, Layer { p: 0.5 }],
        };
        let after = |momentum, scale| After {
            lr: 0.5,
            layers: vec![LayerAfter { p: 0.2, scale }, LayerAfter { p: 0.5, scale }],
            momentum,
        };
        let key = canonical_json(&before).unwrap();
        assert_eq!(canonical_json(&after(0.0, 1.0)).unwrap(), key);
        assert_ne!(canonical_json(&after(0.9, 1.0)).unwrap(), key);
        assert_ne!(canonical_json(&after(0.0, 2.0)).unwrap(), key);
        // Field order does not matter either.
        assert_eq!(
            canonical_json(&serde_json::json!({"layers": [{"p": 0.2}, {"p": 0.5}], "lr": 0.5}))
                .unwrap(),
            key
        );
    }
}
