//! Fetching Fashion-MNIST when no local copy exists: into a staging folder,
//! verified there (structure and pinned content), then moved into the
//! cache, so that nothing unverified ever lands there.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use candle_core::Device;

use super::{cache_dir, load_dir, DataOptions, FILES};

/// Where the original Fashion-MNIST files are published (Zalando Research's
/// repository, over HTTPS; the content is verified against
/// [`super::PINNED_SHA256`] whatever the transport).
const UPSTREAM: &str = "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion";

/// Downloads the four original files into the cache directory with `curl`
/// (which draws its own progress bar), validates them, and returns the
/// directory. Nothing is left in the cache unless all four arrived.
pub(super) fn download(opts: &DataOptions) -> Result<PathBuf> {
    if opts.no_download {
        bail!("download disabled by $DROP_EXP_NO_DOWNLOAD");
    }
    let dir = cache_dir().context("no user cache directory on this system")?;
    let staging = dir.with_extension(format!("partial-{}", std::process::id()));
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    eprintln!(
        "Fashion-MNIST not found locally; downloading it (about 30 MB) into {}",
        dir.display()
    );
    let result = (|| -> Result<()> {
        for name in FILES {
            let file = format!("{name}.gz");
            let status = std::process::Command::new("curl")
                .args([
                    "--fail",
                    "--location",
                    "--progress-bar",
                    "--max-time",
                    "600",
                    "-o",
                ])
                .arg(staging.join(&file))
                .arg(format!("{UPSTREAM}/{file}"))
                .status()
                .context("could not run `curl` (is it installed?)")?;
            if !status.success() {
                bail!("curl could not fetch {UPSTREAM}/{file} ({status})");
            }
        }
        // Validate (structure and pinned content) before the files become
        // visible to later runs.
        load_dir(&staging, &DataOptions::default(), &Device::Cpu)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for name in FILES {
        let file = format!("{name}.gz");
        std::fs::rename(staging.join(&file), dir.join(&file))
            .with_context(|| format!("moving {file} into {}", dir.display()))?;
    }
    let _ = std::fs::remove_dir_all(&staging);
    Ok(dir)
}
