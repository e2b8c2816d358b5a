//! The picture `hostlimit demo` ends with: the terminal chart on stdout, and the SVG of
//! `--plot`, parsed and checked for one series per rate that stays under its limit line.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_hostlimit");

/// The (x, y) points of a `points` attribute.
fn points(text: &str) -> Vec<(f64, f64)> {
    text.split_whitespace()
        .map(|pair| {
            let (x, y) = pair.split_once(',').expect("x,y");
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

#[test]
fn demo_ends_with_a_chart_and_plots_each_rate_against_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("run.svg");
    let output = Command::new(BIN)
        .arg("--dir")
        .arg(dir.path())
        .args(["demo", "--seconds", "2", "--workers", "2", "--plot"])
        .arg(&svg_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The terminal chart: per rate a title, six rows and the time axis.
    for rate in ["50/s", "200/10s"] {
        let title = format!("{rate}: the most admitted in one");
        let at = stdout
            .find(&title)
            .unwrap_or_else(|| panic!("{title}: {stdout}"));
        let chart: Vec<&str> = stdout[at..].lines().skip(1).take(8).collect();
        assert_eq!(
            chart.iter().filter(|l| l.contains('┤')).count(),
            6,
            "{stdout}"
        );
        assert!(chart[6].contains("└─"), "{stdout}");
        assert!(chart[7].trim_end().ends_with('s'), "{stdout}");
    }
    assert!(stdout.contains("█"), "the bars: {stdout}");
    assert!(
        stdout.contains(&format!("the chart is in {}", svg_path.display())),
        "{stdout}"
    );

    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let document = roxmltree::Document::parse(&svg).expect("the SVG is well-formed XML");
    let root = document.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let groups: Vec<_> = root
        .descendants()
        .filter(|n| n.attribute("class") == Some("rate"))
        .collect();
    let names: Vec<&str> = groups
        .iter()
        .filter_map(|g| g.attribute("data-rate"))
        .collect();
    assert_eq!(names, ["50/s", "200/10s"]);
    for group in groups {
        let child = |class: &str| {
            group
                .descendants()
                .find(|n| n.attribute("class") == Some(class))
                .unwrap_or_else(|| panic!("no {class} in {:?}", group.attribute("data-rate")))
        };
        let limit_y: f64 = child("limit").attribute("y1").unwrap().parse().unwrap();
        let curve = points(child("admitted").attribute("points").unwrap());
        assert!(curve.len() >= 100, "{} points", curve.len());
        // x runs forward; no window held more than the limit (y grows downwards).
        assert!(curve.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(
            curve.iter().all(|&(_, y)| y >= limit_y - 0.01),
            "over the limit line"
        );
        // The per-second rate binds in the demo: its curve reaches the line.
        if group.attribute("data-rate") == Some("50/s") {
            assert!(curve.iter().any(|&(_, y)| (y - limit_y).abs() < 0.01));
        }
        let zero_y = curve.iter().map(|&(_, y)| y).fold(f64::MIN, f64::max);
        assert!(zero_y > limit_y, "the curve starts below the limit");
    }
}
