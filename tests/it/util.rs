//! Helpers the test modules share.

use std::path::Path;

use assert_cmd::Command;

/// The binary, with the environment that could point it at other data
/// cleared and downloads off.
pub fn bin() -> Command {
    let mut c = Command::cargo_bin("drop-exp").unwrap();
    c.env_remove("DROP_EXP_DATA")
        .env("DROP_EXP_NO_DOWNLOAD", "1");
    c
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A CSV with its timing columns (`train_seconds`, `seconds`) removed.
pub fn without_timing(p: &Path) -> String {
    let text = read(p);
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let keep: Vec<usize> = (0..header.len())
        .filter(|&i| !header[i].ends_with("seconds"))
        .collect();
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes());
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            keep.iter()
                .map(|&i| r[i].to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Width and height of a PNG file (and a check that it is one).
pub fn png_size(p: &Path) -> (u32, u32) {
    let b = std::fs::read(p).unwrap();
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        p.display()
    );
    (
        u32::from_be_bytes(b[16..20].try_into().unwrap()),
        u32::from_be_bytes(b[20..24].try_into().unwrap()),
    )
}

/// Debian's Fashion-MNIST, if installed (CI installs it); `None` says why a
/// real-data test is skipped.
pub fn fashion_mnist() -> Option<&'static Path> {
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    if dir.join("train-images-idx3-ubyte.gz").is_file() {
        Some(dir)
    } else {
        eprintln!("skipped: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)");
        None
    }
}
