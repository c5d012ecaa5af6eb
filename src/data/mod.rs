//! Fashion-MNIST: find it, fetch it, validate it, load it onto a device.
//!
//! The four standard IDX files (`train-images-idx3-ubyte`, ...) are accepted
//! gzipped or plain. Every file is validated before training (magic number,
//! 28x28 images, 60000/10000 examples, labels in 0..=9, matching counts): a
//! corrupt file is an error that names the file and the problem, never a panic
//! or a silently shorter dataset. Pixels are scaled to [0, 1] as the book's
//! `ToTensor` does, and the whole set lives on the training device.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::Serialize;
use sha2::{Digest, Sha256};

mod download;
mod idx;
mod synthetic;
use download::download;
use idx::maybe_gunzip;
pub use idx::{encode_images, encode_labels, parse_images, parse_labels};
use synthetic::synthetic;

const IMAGE_SIDE: usize = 28;
const IMAGE_PIXELS: usize = IMAGE_SIDE * IMAGE_SIDE;
pub const CLASSES: usize = 10;
pub const TRAIN_SIZE: usize = 60_000;
pub const TEST_SIZE: usize = 10_000;

/// The standard file names, without `.gz`.
const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// SHA-256 of each file's decompressed content, as Zalando Research
/// publishes Fashion-MNIST (the gzip archives differ between mirrors and
/// packagers; their content does not). Every copy is checked against these
/// before anything trains on it.
const PINNED_SHA256: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    (
        "train-labels-idx1-ubyte",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    (
        "t10k-images-idx3-ubyte",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    (
        "t10k-labels-idx1-ubyte",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
];

/// The pinned digest of one of [`FILES`].
fn pinned(name: &str) -> &'static str {
    PINNED_SHA256
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| *d)
        .expect("every file has a pinned digest")
}

/// Where the data comes from and how much of it to use.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DataOptions {
    /// Explicit directory (`--data-dir`); searched first.
    pub data_dir: Option<PathBuf>,
    /// Use only the first N training examples.
    pub train_subset: Option<usize>,
    /// Use only the first N test examples.
    pub test_subset: Option<usize>,
    /// Hold out N training examples for validation (0: none). The held-out
    /// images are a fixed pseudo-random choice (the same for every run and
    /// seed); `train_subset` then takes the first N of the rest.
    pub validation: usize,
    /// A tiny generated dataset instead of Fashion-MNIST (tests, smoke runs).
    pub synthetic: bool,
    /// Accept IDX files whose content is not the pinned Fashion-MNIST (for
    /// tests on files made for them). Recorded in the data's identity.
    pub unpinned: bool,
    /// The directory `$DROP_EXP_DATA` names (read by `main`), searched
    /// after `data_dir`.
    pub env_dir: Option<PathBuf>,
    /// Never download (`$DROP_EXP_NO_DOWNLOAD`, read by `main`).
    pub no_download: bool,
}

impl DataOptions {
    /// These options with the process environment's settings: the
    /// variables `DROP_EXP_DATA` (a directory to search) and
    /// `DROP_EXP_NO_DOWNLOAD` (set: never download). Only `main` calls it.
    pub fn with_env(self, data: Option<std::ffi::OsString>, no_download: bool) -> Self {
        Self {
            env_dir: data.filter(|d| !d.is_empty()).map(PathBuf::from),
            no_download,
            ..self
        }
    }
}

/// What exactly was trained on: recorded in `run.json` and part of the cache
/// key of sweep runs, so results on different data are never mixed.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct DataIdentity {
    /// The directory the files were read from, or `synthetic`.
    source: String,
    /// SHA-256 of each file as found on disk (name, hex digest).
    files: Vec<(String, String)>,
    train_examples: usize,
    test_examples: usize,
    /// Training examples held out for validation (absent in records written
    /// before validation existed: none).
    #[serde(default)]
    validation_examples: usize,
    /// The files were not checked against the pinned Fashion-MNIST digests
    /// (an explicit opt-out, for tests); absent when they were.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    unpinned: bool,
}

impl DataIdentity {
    /// A short digest of the identity, used in cache keys (the source
    /// directory is deliberately left out: the same bytes elsewhere are the
    /// same data).
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (name, sha) in &self.files {
            h.update(name.as_bytes());
            h.update(sha.as_bytes());
        }
        h.update(format!("{}/{}", self.train_examples, self.test_examples).as_bytes());
        // Without a validation split the digest is what it always was.
        if self.validation_examples > 0 {
            h.update(format!("/val{}:{SPLIT_SEED}", self.validation_examples).as_bytes());
        }
        // The first 8 bytes, as 16 hex digits.
        format!("{:x}", h.finalize())[..16].to_string()
    }
}

/// Fashion-MNIST on a device: images \[n, 784\] f32 in \[0, 1\], labels \[n\] u32.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub train_x: Tensor,
    pub train_y: Tensor,
    pub test_x: Tensor,
    pub test_y: Tensor,
    /// The held-out validation images and labels (`None` without a split).
    pub val: Option<(Tensor, Tensor)>,
    pub identity: DataIdentity,
}

impl Dataset {
    pub fn train_len(&self) -> usize {
        self.identity.train_examples
    }
    /// The fixed training images on which the generalisation gap is
    /// measured in evaluation mode: the first `GAP_SUBSET` (or all, if
    /// fewer).
    pub fn train_eval(&self) -> candle_core::Result<(Tensor, Tensor)> {
        let n = GAP_SUBSET.min(self.train_len());
        Ok((self.train_x.narrow(0, 0, n)?, self.train_y.narrow(0, 0, n)?))
    }
}

/// The places searched for the data, in order, each with why it is there.
fn search_path(opts: &DataOptions) -> Vec<(PathBuf, &'static str)> {
    let mut out = Vec::new();
    if let Some(dir) = &opts.data_dir {
        out.push((dir.clone(), "--data-dir"));
    }
    if let Some(dir) = &opts.env_dir {
        out.push((dir.clone(), "$DROP_EXP_DATA"));
    }
    out.push((PathBuf::from("data/fashion-mnist"), "./data/fashion-mnist"));
    if let Some(dir) = cache_dir() {
        out.push((dir, "user cache directory"));
    }
    out.push((
        PathBuf::from("/usr/share/datasets/fashion-mnist"),
        "Debian package dataset-fashion-mnist",
    ));
    out
}

/// Where downloaded data is kept.
fn cache_dir() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("drop-exp").join("fashion-mnist"))
}

/// The path of one of the four files in `dir`, gzipped or plain.
fn file_in(dir: &Path, name: &str) -> Option<PathBuf> {
    [format!("{name}.gz"), name.to_string()]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

fn missing_files(dir: &Path) -> Vec<&'static str> {
    FILES
        .iter()
        .copied()
        .filter(|n| file_in(dir, n).is_none())
        .collect()
}

/// Finds a directory holding all four files. An explicitly named directory
/// (`--data-dir`, `$DROP_EXP_DATA`) that lacks some of them is an error, not
/// something to skip silently.
fn locate(opts: &DataOptions) -> Result<Option<PathBuf>> {
    for (dir, why) in search_path(opts) {
        let missing = missing_files(&dir);
        if missing.is_empty() {
            return Ok(Some(dir));
        }
        let named = why.starts_with('-') || why.starts_with('$');
        if named {
            if !dir.is_dir() {
                bail!(
                    "{why} points to {}, which is not a directory; give the directory that \
                     holds the Fashion-MNIST IDX files",
                    dir.display()
                );
            }
            bail!(
                "{why} directory {} lacks {} (gzipped or not); it needs all four of {}",
                dir.display(),
                missing.join(", "),
                FILES.join(", ")
            );
        }
    }
    Ok(None)
}

fn not_found_error(opts: &DataOptions, download_error: Option<String>) -> anyhow::Error {
    let places: Vec<String> = search_path(opts)
        .iter()
        .map(|(d, why)| format!("  {} ({why})", d.display()))
        .collect();
    let dl = match download_error {
        Some(e) => format!("Downloading it failed too: {e}\n"),
        None => String::new(),
    };
    anyhow::anyhow!(
        "Fashion-MNIST was not found. Looked in:\n{}\n{dl}Fix: install it offline with \
         `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or pass --data-dir DIR \
         with the four IDX files ({}), gzipped or not.",
        places.join("\n"),
        FILES.join(", ")
    )
}

/// Finds (or downloads) and loads the data, validated, onto `dev`.
pub fn load(opts: &DataOptions, dev: &Device) -> Result<Dataset> {
    if opts.synthetic {
        return synthetic(opts, dev);
    }
    load_dir(&find_or_fetch(opts)?, opts, dev)
}

/// The folder with the four files: found, or else downloaded.
fn find_or_fetch(opts: &DataOptions) -> Result<PathBuf> {
    match locate(opts)? {
        Some(dir) => Ok(dir),
        None => download(opts).map_err(|e| not_found_error(opts, Some(format!("{e:#}")))),
    }
}

/// The identity [`load`] would give the data, from the files' bytes
/// alone (hashed, not decoded or checked): what cache keys need.
fn identify(opts: &DataOptions) -> Result<DataIdentity> {
    if opts.synthetic {
        return Ok(synthetic(opts, &Device::Cpu)?.identity);
    }
    let dir = find_or_fetch(opts)?;
    let mut files = Vec::with_capacity(FILES.len());
    for name in FILES {
        let path = file_in(&dir, name)
            .with_context(|| format!("{} is missing from {}", name, dir.display()))?;
        let raw = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        files.push((
            path.file_name().unwrap().to_string_lossy().into_owned(),
            format!("{:x}", Sha256::digest(&raw)),
        ));
    }
    let (train_n, test_n, val_n) = sizes(TRAIN_SIZE, TEST_SIZE, opts)?;
    Ok(DataIdentity {
        source: dir.display().to_string(),
        files,
        train_examples: train_n,
        test_examples: test_n,
        validation_examples: val_n,
        unpinned: opts.unpinned,
    })
}

/// The data a sweep may train on: its identity at once (what the cache
/// keys need), the images loaded, checked and put on the device only when
/// a run has to be trained. Analysing stored runs reads no image.
pub struct DataSource {
    opts: DataOptions,
    dev: Device,
    pub identity: DataIdentity,
    loaded: OnceLock<Dataset>,
}

impl DataSource {
    pub fn new(opts: &DataOptions, dev: &Device) -> Result<Self> {
        Ok(Self {
            opts: opts.clone(),
            dev: dev.clone(),
            identity: identify(opts)?,
            loaded: OnceLock::new(),
        })
    }

    /// The dataset, loaded on first use.
    pub fn get(&self) -> Result<&Dataset> {
        if let Some(d) = self.loaded.get() {
            return Ok(d);
        }
        let d = load(&self.opts, &self.dev)?;
        if d.identity != self.identity {
            bail!(
                "the data files in {} changed while this command ran; run it again",
                d.identity.source
            );
        }
        Ok(self.loaded.get_or_init(|| d))
    }
}

/// Loads the four files from `dir`. The decoded, checked files of the
/// last directory read are kept for the process: `report` asks for the
/// same files once per exercise, and decompressing and hashing them is
/// most of what it would otherwise spend.
fn load_dir(dir: &Path, opts: &DataOptions, dev: &Device) -> Result<Dataset> {
    type Kept = (Vec<(PathBuf, u64, Option<std::time::SystemTime>)>, bool);
    type Read = Arc<(RawData, Vec<(String, String)>)>;
    static LAST: Mutex<Option<(Kept, Read)>> = Mutex::new(None);
    // The files as they are now: a file replaced since is read again.
    let key: Kept = (
        FILES
            .iter()
            .filter_map(|name| file_in(dir, name))
            .map(|p| {
                let meta = std::fs::metadata(&p).ok();
                let len = meta.as_ref().map_or(0, |m| m.len());
                let modified = meta.and_then(|m| m.modified().ok());
                (p, len, modified)
            })
            .collect(),
        opts.unpinned,
    );
    let kept = LAST
        .lock()
        .expect("not poisoned")
        .as_ref()
        .filter(|(k, _)| *k == key)
        .map(|(_, raw)| raw.clone());
    let raw = match kept {
        Some(raw) => raw,
        None => {
            let raw = Arc::new(read_dir(dir, opts)?);
            *LAST.lock().expect("not poisoned") = Some((key, raw.clone()));
            raw
        }
    };
    let (raw, files) = &*raw;
    raw.to_dataset(dir.display().to_string(), files.clone(), opts, dev)
}

/// Reads, decodes and checks the four files of `dir`.
fn read_dir(dir: &Path, opts: &DataOptions) -> Result<(RawData, Vec<(String, String)>)> {
    let mut files = Vec::new();
    let mut read = |name: &str| -> Result<(PathBuf, Vec<u8>)> {
        let path = file_in(dir, name)
            .with_context(|| format!("{} is missing from {}", name, dir.display()))?;
        let raw = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        files.push((
            path.file_name().unwrap().to_string_lossy().into_owned(),
            format!("{:x}", Sha256::digest(&raw)),
        ));
        let bytes = maybe_gunzip(&raw).with_context(|| {
            format!(
                "{} is not a valid gzip file (truncated or corrupt); delete it and reinstall \
                 or re-download the data",
                path.display()
            )
        })?;
        Ok((path, bytes))
    };
    // The content must be Fashion-MNIST's, checked after its structure (so
    // that a damaged file gets the more telling message).
    let verify = |path: &Path, name: &str, bytes: &[u8]| -> Result<()> {
        let found = format!("{:x}", Sha256::digest(bytes));
        let want = pinned(name);
        if opts.unpinned || found == want {
            return Ok(());
        }
        bail!(
            "{}: its content is not Fashion-MNIST's {name}: SHA-256 {found}, expected {want} \
             (a different version, or a damaged or altered copy). Delete it and reinstall \
             (`apt-get install --reinstall dataset-fashion-mnist`) or re-download it, or pass \
             --data-dir DIR with the original files",
            path.display()
        )
    };
    let (p, b) = read(FILES[0])?;
    let train_images = parse_images(&b, &p, TRAIN_SIZE)?;
    verify(&p, FILES[0], &b)?;
    let (p, b) = read(FILES[1])?;
    let train_labels = parse_labels(&b, &p, TRAIN_SIZE)?;
    verify(&p, FILES[1], &b)?;
    let (p, b) = read(FILES[2])?;
    let test_images = parse_images(&b, &p, TEST_SIZE)?;
    verify(&p, FILES[2], &b)?;
    let (p, b) = read(FILES[3])?;
    let test_labels = parse_labels(&b, &p, TEST_SIZE)?;
    verify(&p, FILES[3], &b)?;
    let raw = RawData {
        train_images,
        train_labels,
        test_images,
        test_labels,
    };
    Ok((raw, files))
}

/// Images as bytes (row-major, 784 per image) and labels, before subsetting.
struct RawData {
    train_images: Vec<u8>,
    train_labels: Vec<u8>,
    test_images: Vec<u8>,
    test_labels: Vec<u8>,
}

impl RawData {
    fn to_dataset(
        &self,
        source: String,
        files: Vec<(String, String)>,
        opts: &DataOptions,
        dev: &Device,
    ) -> Result<Dataset> {
        let n_test = self.test_labels.len();
        let (val_idx, train_idx) = split(self.train_labels.len(), opts.validation)?;
        let (train_n, test_n, _) = sizes(self.train_labels.len(), n_test, opts)?;
        let images = |bytes: &[u8], idx: &[usize]| -> Result<Tensor> {
            let mut px = Vec::with_capacity(idx.len() * IMAGE_PIXELS);
            for &i in idx {
                px.extend(
                    bytes[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS]
                        .iter()
                        .map(|&b| b as f32 / 255.0),
                );
            }
            Ok(Tensor::from_vec(px, (idx.len(), IMAGE_PIXELS), dev)?)
        };
        let labels = |bytes: &[u8], idx: &[usize]| -> Result<Tensor> {
            let ys: Vec<u32> = idx.iter().map(|&i| bytes[i] as u32).collect();
            Ok(Tensor::from_vec(ys, idx.len(), dev)?)
        };
        let train_idx = &train_idx[..train_n];
        let test_idx: Vec<usize> = (0..test_n).collect();
        let val = if val_idx.is_empty() {
            None
        } else {
            Some((
                images(&self.train_images, &val_idx)?,
                labels(&self.train_labels, &val_idx)?,
            ))
        };
        Ok(Dataset {
            train_x: images(&self.train_images, train_idx)?,
            train_y: labels(&self.train_labels, train_idx)?,
            test_x: images(&self.test_images, &test_idx)?,
            test_y: labels(&self.test_labels, &test_idx)?,
            val,
            identity: DataIdentity {
                source,
                files,
                train_examples: train_n,
                test_examples: test_n,
                validation_examples: val_idx.len(),
                unpinned: opts.unpinned,
            },
        })
    }
}

/// Seed of the validation split: fixed, so every run and every seed holds
/// out the same images.
const SPLIT_SEED: u64 = 0x5b11_7000;

/// Training images on which the generalisation gap is measured (see
/// [`Dataset::train_eval`]).
const GAP_SUBSET: usize = 5000;

/// The training, test and validation examples a run uses, of `train` and
/// `test` in the files, with the options' split and subsets.
fn sizes(train: usize, test: usize, opts: &DataOptions) -> Result<(usize, usize, usize)> {
    let (val_idx, train_idx) = split(train, opts.validation)?;
    let train_n = subset(opts.train_subset, train_idx.len(), "--train-subset").map_err(|e| {
        match opts.validation {
            0 => e,
            v => e.context(format!(
                "{v} of the training images are held out for validation"
            )),
        }
    })?;
    let test_n = subset(opts.test_subset, test, "--test-subset")?;
    Ok((train_n, test_n, val_idx.len()))
}

/// Splits training indices `0..n` into (validation, training): `validation`
/// indices drawn without replacement by the fixed [`SPLIT_SEED`], each part
/// in ascending order (so `--train-subset N` is the first N of the rest).
fn split(n: usize, validation: usize) -> Result<(Vec<usize>, Vec<usize>)> {
    if validation == 0 {
        return Ok((Vec::new(), (0..n).collect()));
    }
    if validation >= n {
        bail!(
            "--validation {validation} holds out all {n} training images; give fewer than {n} \
             (0 turns the split off)"
        );
    }
    let perm = crate::rng::Rng::new(SPLIT_SEED, crate::rng::Stream::Shuffle).permutation(n);
    let mut held = vec![false; n];
    for &i in &perm[..validation] {
        held[i as usize] = true;
    }
    let (val, train): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| held[i]);
    Ok((val, train))
}

fn subset(requested: Option<usize>, available: usize, flag: &str) -> Result<usize> {
    match requested {
        None => Ok(available),
        Some(0) => bail!("{flag} 0 leaves no examples; give a positive number"),
        Some(n) if n > available => {
            bail!("{flag} {n} is larger than the {available} examples available; give at most {available}")
        }
        Some(n) => Ok(n),
    }
}

#[cfg(test)]
mod tests;
