//! The benchmark charts: bench/plot.py (called by bench/harness.py after
//! each run, or on its own for an earlier run's CSV) draws one SVG bar chart
//! per strata variant from the newest CSV in bench/results/; the committed
//! `latest-*.svg` that README shows are what it draws now, and every bar
//! carries the same ratio as the Markdown table of that run.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn results() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("bench")
        .join("results")
}

/// The newest results CSV (files are named by date).
fn newest_csv() -> PathBuf {
    let mut csvs: Vec<PathBuf> = std::fs::read_dir(results())
        .expect("bench/results")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    csvs.sort();
    csvs.pop().expect("a results CSV")
}

/// `metric vs peer` → ratio, from the bars' tooltips of an SVG chart.
fn bars(svg: &str) -> BTreeMap<String, String> {
    svg.split("<rect class=\"bar\"")
        .skip(1)
        .filter_map(|rest| {
            let title = rest.split("<title>").nth(1)?.split("</title>").next()?;
            let (what, r) = title.rsplit_once(": ")?;
            Some((what.replace("&amp;", "&"), r.to_string()))
        })
        .collect()
}

/// `metric vs peer` → ratio, from the Markdown table of `variant`.
fn table(md: &str, variant: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = md
        .lines()
        .skip_while(|l| !l.starts_with(&format!("## {variant} against each peer")));
    let header = lines
        .find(|l| l.starts_with("| metric"))
        .expect("table header");
    let peers: Vec<&str> = header
        .split('|')
        .map(str::trim)
        .skip(2)
        .filter(|s| !s.is_empty())
        .collect();
    for row in lines.skip(1).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let metric = cells[1];
        for (p, v) in peers.iter().zip(&cells[2..]) {
            if *v != "–" {
                out.insert(format!("{metric} vs {p}"), (*v).to_string());
            }
        }
    }
    out
}

#[test]
fn the_latest_charts_are_drawn_from_the_newest_results_and_match_their_tables() {
    let csv = newest_csv();
    let out_dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new("python3");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/plot.py"))
        .arg(&csv)
        .arg("--out")
        .arg(out_dir.path());
    let out = run_for(&mut cmd, COMMAND_TIMEOUT);
    assert_ok(&out, "bench/plot.py");
    let stamp = csv
        .file_stem()
        .expect("stem")
        .to_string_lossy()
        .into_owned();
    let md =
        std::fs::read_to_string(results().join(format!("{stamp}.md"))).expect("the run's Markdown");
    for variant in ["strata-general", "strata-max"] {
        let drawn = std::fs::read_to_string(out_dir.path().join(format!("latest-{variant}.svg")))
            .expect("chart drawn");
        assert!(drawn.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(drawn.trim_end().ends_with("</svg>"));
        let committed = std::fs::read_to_string(results().join(format!("latest-{variant}.svg")))
            .unwrap_or_default();
        assert!(
            committed == drawn,
            "bench/results/latest-{variant}.svg is not the chart of {}: run `python3 bench/plot.py {}`",
            csv.display(),
            csv.display()
        );
        let want = table(&md, variant);
        assert!(
            want.len() >= 15,
            "{variant}: table has {} cells",
            want.len()
        );
        assert_eq!(bars(&drawn), want, "{variant}: bars and table differ");
    }
}

#[test]
fn readme_shows_the_latest_charts() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README");
    for variant in ["strata-general", "strata-max"] {
        let link = format!("bench/results/latest-{variant}.svg");
        assert!(readme.contains(&link), "README does not show {link}");
    }
}
