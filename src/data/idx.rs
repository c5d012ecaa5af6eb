//! The IDX format of the Fashion-MNIST files: parsing with validation
//! (magic numbers, counts, image size, label range), gzip detection, and
//! encoding (for tests and the synthetic data).

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Result};

use super::{CLASSES, IMAGE_PIXELS, IMAGE_SIDE};

const IMAGES_MAGIC: u32 = 2051;
const LABELS_MAGIC: u32 = 2049;

pub(super) fn maybe_gunzip(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::GzDecoder::new(raw).read_to_end(&mut out)?;
        Ok(out)
    } else {
        Ok(raw.to_vec())
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
}

/// Parses an IDX3 image file holding exactly `expected` 28x28 images.
pub fn parse_images(bytes: &[u8], path: &Path, expected: usize) -> Result<Vec<u8>> {
    let p = path.display();
    if bytes.len() < 16 {
        bail!("{p}: only {} bytes, too short for an IDX image header (16 bytes); the file is truncated", bytes.len());
    }
    let magic = be_u32(bytes, 0);
    if magic != IMAGES_MAGIC {
        bail!("{p}: bad magic number {magic} (expected {IMAGES_MAGIC} for IDX images); this is not an image file, or it is corrupt");
    }
    let (n, rows, cols) = (
        be_u32(bytes, 4) as usize,
        be_u32(bytes, 8) as usize,
        be_u32(bytes, 12) as usize,
    );
    if rows != IMAGE_SIDE || cols != IMAGE_SIDE {
        bail!("{p}: images are {rows}x{cols}, expected {IMAGE_SIDE}x{IMAGE_SIDE}");
    }
    if n != expected {
        bail!("{p}: header says {n} images, expected {expected}; use the complete Fashion-MNIST files");
    }
    let want = 16 + n * IMAGE_PIXELS;
    if bytes.len() != want {
        bail!(
            "{p}: {} bytes, but {n} images need exactly {want}; the file is {}",
            bytes.len(),
            if bytes.len() < want {
                "truncated"
            } else {
                "followed by extra data"
            }
        );
    }
    Ok(bytes[16..].to_vec())
}

/// Parses an IDX1 label file holding exactly `expected` labels in 0..=9.
pub fn parse_labels(bytes: &[u8], path: &Path, expected: usize) -> Result<Vec<u8>> {
    let p = path.display();
    if bytes.len() < 8 {
        bail!("{p}: only {} bytes, too short for an IDX label header (8 bytes); the file is truncated", bytes.len());
    }
    let magic = be_u32(bytes, 0);
    if magic != LABELS_MAGIC {
        bail!("{p}: bad magic number {magic} (expected {LABELS_MAGIC} for IDX labels); this is not a label file, or it is corrupt");
    }
    let n = be_u32(bytes, 4) as usize;
    if n != expected {
        bail!(
            "{p}: header says {n} labels, expected {expected} (image and label counts must match)"
        );
    }
    if bytes.len() != 8 + n {
        bail!(
            "{p}: {} bytes, but {n} labels need exactly {}; the file is {}",
            bytes.len(),
            8 + n,
            if bytes.len() < 8 + n {
                "truncated"
            } else {
                "followed by extra data"
            }
        );
    }
    let labels = &bytes[8..];
    if let Some(i) = labels.iter().position(|&l| l as usize >= CLASSES) {
        bail!(
            "{p}: label {} at index {i} is outside 0..=9; the file is corrupt",
            labels[i]
        );
    }
    Ok(labels.to_vec())
}

/// Encodes images as an IDX3 file (for the tests and the bad-input checks,
/// which build valid files to damage).
pub fn encode_images(images: &[u8], n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + images.len());
    for v in [IMAGES_MAGIC, n as u32, IMAGE_SIDE as u32, IMAGE_SIDE as u32] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(images);
    out
}

/// Encodes labels as an IDX1 file.
pub fn encode_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + labels.len());
    out.extend_from_slice(&LABELS_MAGIC.to_be_bytes());
    out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}

/// Mutated IDX files (truncations, bit flips, rewritten counts and
/// dimensions, garbage, gzip damage) never panic the readers: each is read
/// or rejected with an error that names the file.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    /// Cases per property: 2 x 2,560 here and 2 x 2,560 in the CSV and
    /// settings readers' (tests/it/props.rs), 10,240 bad inputs in all.
    const CASES: u32 = 2560;

    fn config() -> ProptestConfig {
        ProptestConfig::with_cases(CASES)
    }

    fn images(n: usize) -> Vec<u8> {
        let pixels: Vec<u8> = (0..n * IMAGE_PIXELS).map(|i| (i % 251) as u8).collect();
        encode_images(&pixels, n)
    }

    /// One mutation of `bytes`, chosen by `kind`, at `at` (scaled to the
    /// length), with `value`.
    fn mutate(mut bytes: Vec<u8>, kind: u8, at: usize, value: u32) -> Vec<u8> {
        let len = bytes.len().max(1);
        let i = at % len;
        match kind % 5 {
            0 => bytes.truncate(i),
            1 => {
                if let Some(b) = bytes.get_mut(i) {
                    *b ^= 1 << (value % 8);
                }
            }
            // Rewrite one of the header's 32-bit fields (magic, count, rows, cols).
            2 => {
                let field = 4 * (value as usize % 4);
                if bytes.len() >= field + 4 {
                    bytes[field..field + 4].copy_from_slice(&value.to_be_bytes());
                }
            }
            3 => bytes.extend(std::iter::repeat_n((value % 256) as u8, 1 + i % 64)),
            _ => {
                // A gzip stream damaged in its middle.
                let mut gz = Vec::new();
                let mut enc = flate2::write::GzEncoder::new(&mut gz, flate2::Compression::fast());
                std::io::Write::write_all(&mut enc, &bytes).unwrap();
                enc.finish().unwrap();
                let j = at % gz.len();
                gz[j] ^= 0x5a;
                bytes = gz;
            }
        }
        bytes
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn mutated_image_files_are_read_or_rejected(kind in 0u8..5, at in 0usize..1_000_000, value in any::<u32>()) {
            let path = Path::new("mutated-images");
            let bytes = mutate(images(3), kind, at, value);
            if let Ok(raw) = maybe_gunzip(&bytes) {
                if let Err(e) = parse_images(&raw, path, 3) {
                    prop_assert!(e.to_string().contains("mutated-images"), "{e}");
                }
            }
        }

        #[test]
        fn mutated_label_files_are_read_or_rejected(kind in 0u8..5, at in 0usize..1_000_000, value in any::<u32>()) {
            let path = Path::new("mutated-labels");
            let bytes = mutate(encode_labels(&[0, 3, 9, 1, 7]), kind, at, value);
            if let Ok(raw) = maybe_gunzip(&bytes) {
                match parse_labels(&raw, path, 5) {
                    Ok(labels) => prop_assert!(labels.iter().all(|&l| (l as usize) < CLASSES)),
                    Err(e) => prop_assert!(e.to_string().contains("mutated-labels"), "{e}"),
                }
            }
        }
    }
}
