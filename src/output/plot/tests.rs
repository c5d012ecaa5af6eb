use super::*;

fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let w = u32::from_be_bytes(b[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(b[20..24].try_into().unwrap());
    (w, h)
}

/// The contents of the SVG's `<text>` elements, trimmed.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..];
            Some(body[..body.find("</text>")?].trim().to_string())
        })
        .collect()
}

const BLUE: Rgb = Rgb(31, 119, 180);

/// Accuracy over epochs whose 95% band (from few seeds) reaches below 0 and
/// above 1, with one run that diverged.
fn accuracy_panel() -> Panel {
    let pts: Vec<_> = (1..=10)
        .map(|e| (e as f64, 0.8 + 0.01 * e as f64, -0.4, 1.6))
        .collect();
    let mut s = Series::band("dropout (mean of 2; 1 diverged, x)", BLUE, pts);
    s.runs = vec![(1..=10)
        .map(|e| (e as f64, 0.8 + 0.012 * e as f64))
        .collect()];
    s.ends = vec![(4.0, 0.83)];
    Panel {
        title: "test accuracy".into(),
        x_label: "epoch".into(),
        y_label: "accuracy".into(),
        series: vec![s],
        hlines: vec![("reference".into(), 0.85)],
        clip: Some((0.0, 1.0)),
        ..Default::default()
    }
}

fn forest() -> Dots {
    Dots {
        title: "effects".into(),
        x_label: "difference (points)".into(),
        rows: vec![
            DotRow {
                label: "swapped".into(),
                value: 0.55,
                lo: -0.54,
                hi: 1.65,
                color: BLUE,
                note: Some(("undecided".into(), INK)),
            },
            DotRow {
                label: "none".into(),
                value: -0.6,
                lo: f64::NAN,
                hi: f64::NAN,
                color: Rgb(120, 120, 120),
                note: Some(("too few runs".into(), INK)),
            },
        ],
        band: Some(("equivalence margin ±0.5".into(), -0.5, 0.5)),
        zero: true,
        clip: None,
    }
}

#[test]
fn every_figure_kind_is_written_as_png_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let p1 = dir.path().join("curves.png");
    save(
        &p1,
        &Panels {
            title: "curves".into(),
            panels: vec![accuracy_panel(), accuracy_panel()],
            cols: 2,
        },
    )
    .unwrap();
    let p2 = dir.path().join("effects.png");
    save(&p2, &forest()).unwrap();
    let p3 = dir.path().join("heat.png");
    save(
        &p3,
        &Heatmap {
            title: "heat".into(),
            x_label: "p2".into(),
            y_label: "p1".into(),
            xs: vec![0.0, 0.5],
            ys: vec![0.0, 0.5],
            values: vec![vec![0.8, 0.81], vec![0.82, f64::NAN]],
        },
    )
    .unwrap();
    for (p, words) in [
        (
            &p1,
            vec!["curves", "epoch", "dropout (mean of 2; 1 diverged, x)"],
        ),
        (
            &p2,
            vec![
                "effects",
                "swapped",
                "undecided",
                "difference (points) (shaded: equivalence margin ±0.5)",
            ],
        ),
        (&p3, vec!["heat", "p1", "81.0"]),
    ] {
        assert_eq!(png_size(p), SIZE);
        // A drawn figure compresses to far more than a blank canvas.
        assert!(
            std::fs::metadata(p).unwrap().len() > 10_000,
            "{} looks empty",
            p.display()
        );
        let svg = std::fs::read_to_string(p.with_extension("svg")).unwrap();
        assert!(svg.starts_with("<svg"), "{}", p.display());
        let texts = svg_texts(&svg);
        for w in words {
            assert!(
                texts.iter().any(|t| t == w),
                "{w} not a text label in {}: {texts:?}",
                p.display()
            );
        }
    }
    // No temporary files left: three PNGs and three SVGs.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 6);
}

/// The accuracy axis stays within [0, 1] whatever the bands say, and still
/// holds every mean.
#[test]
fn accuracy_axes_stay_within_0_and_1() {
    let p = accuracy_panel();
    let (_, (lo, hi)) = p.ranges(&p.clipped());
    assert!(lo >= 0.0 && hi <= 1.0, "{lo}..{hi}");
    assert!(lo <= 0.81 && hi >= 0.9, "{lo}..{hi}");
    let dots = Dots {
        rows: vec![DotRow {
            label: "a".into(),
            value: 0.84,
            lo: 0.5,
            hi: 1.3,
            color: BLUE,
            note: None,
        }],
        clip: Some((0.0, 1.0)),
        ..Default::default()
    };
    let (lo, hi) = dots.x_range();
    assert!(lo >= 0.0 && hi <= 1.0, "{lo}..{hi}");
}

/// Far-out single values do not set the axis; the means always do.
#[test]
fn ranges_are_robust_to_outliers() {
    let may: Vec<f64> = (0..100)
        .map(|i| 0.8 + 0.001 * i as f64)
        .chain([1e17])
        .collect();
    let (lo, hi) = robust_range(&[0.85], &may, 0.02).unwrap();
    assert!(hi < 1.0, "{hi}");
    assert!(lo <= 0.85);
}

#[test]
fn tick_labels_are_clean() {
    assert_eq!(number(-6e-17, 1.0), "0");
    assert_eq!(number(0.25, 1.0), "0.25");
    assert_eq!(number(150.0, 100.0), "150");
    assert_eq!(scientific(0.0), "0");
    assert_eq!(scientific(1e-5), "1e-5");
    assert_eq!(scientific(3e-4), "3e-4");
}
