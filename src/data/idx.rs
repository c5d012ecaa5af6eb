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

/// Encodes images as an IDX3 file (used for the download cache and tests).
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
