//! Reading, checking and splitting the data.

use super::*;

fn p() -> PathBuf {
    PathBuf::from("f")
}

#[test]
fn roundtrip_images_and_labels() {
    let imgs = vec![7u8; 3 * IMAGE_PIXELS];
    assert_eq!(
        parse_images(&encode_images(&imgs, 3), &p(), 3).unwrap(),
        imgs
    );
    let labels = vec![0u8, 9, 4];
    assert_eq!(
        parse_labels(&encode_labels(&labels), &p(), 3).unwrap(),
        labels
    );
}

#[test]
fn rejects_bad_magic() {
    let mut b = encode_labels(&[1, 2]);
    b[2] = 9;
    let e = parse_labels(&b, &p(), 2).unwrap_err().to_string();
    assert!(e.contains("bad magic"), "{e}");
    // A label file long enough for an image header: its magic is wrong.
    let e = parse_images(&encode_labels(&[1; 10]), &p(), 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bad magic number 2049 (expected 2051"), "{e}");
    // Shorter than the header: too short, before any magic is read.
    let e = parse_images(&encode_labels(&[1]), &p(), 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("only 9 bytes, too short"), "{e}");
}

#[test]
fn rejects_truncated_and_extra() {
    let b = encode_images(&vec![0u8; 2 * IMAGE_PIXELS], 2);
    let e = parse_images(&b[..b.len() - 1], &p(), 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("truncated"), "{e}");
    let mut long = b.clone();
    long.push(0);
    let e = parse_images(&long, &p(), 2).unwrap_err().to_string();
    assert!(e.contains("extra data"), "{e}");
}

#[test]
fn rejects_count_mismatch_and_bad_labels() {
    let e = parse_labels(&encode_labels(&[1, 2]), &p(), 3)
        .unwrap_err()
        .to_string();
    assert!(e.contains("expected 3"), "{e}");
    let e = parse_labels(&encode_labels(&[1, 10]), &p(), 2)
        .unwrap_err()
        .to_string();
    assert!(e.contains("label 10 at index 1"), "{e}");
}

#[test]
fn subset_bounds() {
    assert_eq!(subset(None, 10, "--x").unwrap(), 10);
    assert_eq!(subset(Some(4), 10, "--x").unwrap(), 4);
    assert!(subset(Some(11), 10, "--x").is_err());
    assert!(subset(Some(0), 10, "--x").is_err());
}

/// The validation split is fixed (the same every time), disjoint from
/// the training images, of the size asked for; `train_subset` takes the
/// first of the rest; the split changes the data digest, no split keeps
/// the old one.
#[test]
fn validation_split_is_fixed_and_disjoint() {
    let (val, train) = split(1200, 200).unwrap();
    assert_eq!((val.len(), train.len()), (200, 1000));
    assert_eq!(split(1200, 200).unwrap().0, val);
    assert!(val.iter().all(|i| !train.contains(i)));
    assert!(val.windows(2).all(|w| w[0] < w[1]) && train.windows(2).all(|w| w[0] < w[1]));
    // Spread over the set, not a block at one end.
    assert!(val[0] < 100 && *val.last().unwrap() > 1100);
    assert!(split(1200, 1200).is_err());
    assert_eq!(split(5, 0).unwrap(), (vec![], vec![0, 1, 2, 3, 4]));

    let load = |validation, train_subset| {
        let opts = DataOptions {
            synthetic: true,
            validation,
            train_subset,
            ..Default::default()
        };
        load(&opts, &Device::Cpu).unwrap()
    };
    let (plain, held) = (load(0, None), load(200, Some(300)));
    assert_eq!(held.train_len(), 300);
    assert_eq!(held.identity.validation_examples, 200);
    let (vx, _) = held.val.as_ref().unwrap();
    assert_eq!(vx.dims(), &[200, IMAGE_PIXELS]);
    // The held-out images are the training images at `val`.
    let first: Vec<f32> = vx.get(0).unwrap().to_vec1().unwrap();
    let orig: Vec<f32> = plain.train_x.get(val[0]).unwrap().to_vec1().unwrap();
    assert_eq!(first, orig);
    assert!(plain.val.is_none());
    assert_ne!(plain.identity.digest(), held.identity.digest());
}
