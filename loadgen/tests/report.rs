//! Reports from a small committed results folder: they render from saved data alone, their
//! numbers are those of `summary.json`, every SVG parses, and a comparison flags regressions.
//!
//! Run with: `cargo test -p loadgen --test report`

use std::path::{Path, PathBuf};

use loadgen::report::model::CapacityModel;
use loadgen::report::{self, compare};
use loadgen::results::read::RunData;
use loadgen::results::summary::Summary;
use loadgen::verdict::limits::Limits;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/small-run")
}

fn summary(dir: &Path) -> Summary {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

fn rendered() -> (tempfile::TempDir, PathBuf) {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("report");
    report::render(&[fixture()], &dir, &Limits::default(), &CapacityModel::default(), report::Formats::All)
        .expect("renders");
    (out, dir)
}

/// The cells of the Markdown table row whose cells include `key`.
fn row_with<'a>(markdown: &'a str, key: &str) -> Vec<&'a str> {
    markdown
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect::<Vec<_>>())
        .find(|cells| cells.contains(&key))
        .unwrap_or_else(|| panic!("no row with {key}"))
}

#[test]
fn the_three_documents_render_in_html_and_markdown_from_saved_data() {
    let (_keep, dir) = rendered();
    for stem in report::DOCUMENTS {
        let html = std::fs::read_to_string(dir.join(format!("{stem}.html"))).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(!html.contains("http://") || html.contains("http://www.w3.org/2000/svg"), "{stem}: no external links");
        assert!(!html.contains("<script") && !html.contains("<link "), "{stem} is self-contained");
        let md = std::fs::read_to_string(dir.join(format!("{stem}.md"))).unwrap();
        assert!(md.starts_with("# "));
    }
    let baseline = std::fs::read_to_string(dir.join("performance-baseline.html")).unwrap();
    assert!(baseline.matches("<svg").count() >= 8, "charts are inline in the HTML");
}

#[test]
fn every_document_opens_with_its_verdict() {
    let (_keep, dir) = rendered();
    let summary = summary(&fixture());
    let opening = |stem: &str| {
        let md = std::fs::read_to_string(dir.join(format!("{stem}.md"))).unwrap();
        md.lines().filter(|l| !l.is_empty()).nth(1).unwrap_or_default().to_owned()
    };
    let baseline = opening("performance-baseline");
    assert!(baseline.starts_with("> **Verdict.** "), "{baseline}");
    let expected = if summary.passed { "**PASS**" } else { "**FAIL**" };
    assert!(baseline.contains(expected), "the thresholds' verdict is the summary's: {baseline}");
    let capacity = opening("capacity-planning");
    assert!(capacity.starts_with("> **Verdict.** One instance of each service sustained"), "{capacity}");
    assert!(capacity.contains("the largest tier (1000000 daily active users)"), "{capacity}");
    let tuning = opening("performance-tuning");
    assert!(tuning.starts_with("> **Verdict.** At **"), "{tuning}");
    let html = std::fs::read_to_string(dir.join("performance-baseline.html")).unwrap();
    let verdict_at = html.find("class=\"verdict\"").expect("the HTML has the verdict");
    assert!(verdict_at < html.find("<h2>").unwrap(), "before the first section");
}

#[test]
fn the_baseline_numbers_are_those_of_the_summary() {
    let (_keep, dir) = rendered();
    let summary = summary(&fixture());
    let md = std::fs::read_to_string(dir.join("performance-baseline.md")).unwrap();
    for (name, op) in &summary.operations {
        let cells = row_with(&md, name);
        let expected = [
            format!("{:.1}", op.achieved_rate),
            format!("{:.2}", op.latency_ms.p50),
            format!("{:.2}", op.latency_ms.p95),
            format!("{:.2}", op.latency_ms.p99),
            format!("{:.2}%", op.error_rate * 100.0),
            format!("{:.2}%", op.dropped_ratio * 100.0),
        ];
        assert_eq!(&cells[3..], &expected.iter().map(String::as_str).collect::<Vec<_>>()[..], "{name}");
    }
    let resources = summary.resources.as_ref().unwrap();
    for (component, c) in &resources.components {
        let cells = row_with(&md, component);
        assert_eq!(cells[2], format!("{:.1}", c.cpu_percent_mean), "{component} CPU mean");
        assert_eq!(cells[4], format!("{:.1}", c.memory_max_mb), "{component} memory");
    }
}

#[test]
fn the_capacity_and_tuning_numbers_are_those_of_the_summary() {
    let (_keep, dir) = rendered();
    let summary = summary(&fixture());
    let run = RunData::load(&fixture()).unwrap();
    let (rps, eps) = run.offered();
    let capacity = std::fs::read_to_string(dir.join("capacity-planning.md")).unwrap();
    assert!(
        capacity.contains(&format!("plan for **{:.0} rps** and **{:.0} eps**", rps * 0.7, eps * 0.7)),
        "{capacity}"
    );
    let tuning = std::fs::read_to_string(dir.join("performance-tuning.md")).unwrap();
    let db = summary.database.as_ref().unwrap();
    let top = &db.top_statements[0];
    let cells = tuning
        .lines()
        .find(|l| l.starts_with(&format!("| {} | {:.0} |", top.calls, top.total_ms)))
        .unwrap_or_else(|| panic!("the top statement's row:\n{tuning}"));
    assert!(cells.contains(&format!("{:.3}", top.mean_ms)));
    for (service, busy) in &db.pool_busy_max_by_service {
        assert_eq!(row_with(&tuning, service)[2], format!("{:.2}%", busy * 100.0));
    }
    for plan in &db.explain {
        assert!(tuning.contains(plan.plan.lines().next().unwrap()), "the plan of {}", plan.name);
    }
}

#[test]
fn every_svg_parses() {
    let (_keep, dir) = rendered();
    let mut charts = 0;
    for entry in std::fs::read_dir(dir.join("charts")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        charts += 1;
    }
    assert!(charts >= 8, "{charts} charts");
    // And the inline copies in the HTML.
    let html = std::fs::read_to_string(dir.join("performance-baseline.html")).unwrap();
    for piece in html.split("<svg").skip(1) {
        let svg = format!("<svg{}</svg>", piece.split("</svg>").next().unwrap());
        roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("inline SVG: {e}"));
    }
}

#[test]
fn a_comparison_flags_a_regression_beyond_the_tolerance_and_not_within_it() {
    let run = RunData::load(&fixture()).unwrap();
    let same = RunData::load(&fixture()).unwrap();
    let (_, regressions) = compare::document(&run, &same, 0.10);
    assert_eq!(regressions, 0);

    let copy = tempfile::tempdir().unwrap();
    let slower = copy.path().join("slower");
    copy_dir(&fixture(), &slower);
    let mut changed = summary(&slower);
    let op = changed.operations.get_mut("GET /v1/challenges").unwrap();
    op.latency_ms.p95 *= 1.5;
    op.latency_ms.p99 *= 1.05;
    std::fs::write(slower.join("summary.json"), serde_json::to_string(&changed).unwrap()).unwrap();
    let slower = RunData::load(&slower).unwrap();
    let deltas = compare::deltas(&run, &slower, 0.10);
    let flagged: Vec<_> = deltas.iter().filter(|d| d.regression).map(|d| (d.operation.as_str(), d.figure)).collect();
    assert_eq!(flagged, [("GET /v1/challenges", "p95 ms")], "p99 +5% is within 10%");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of the fixture in `parent/name`.
fn fixture_copy(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(dir.join("hdr")).unwrap();
    for entry in std::fs::read_dir(fixture()).unwrap().chain(std::fs::read_dir(fixture().join("hdr")).unwrap()) {
        let path = entry.unwrap().path();
        if path.is_file() {
            let relative = path.strip_prefix(fixture()).unwrap();
            std::fs::copy(&path, dir.join(relative)).unwrap();
        }
    }
    dir
}

/// A copy of the fixture whose `run.json` says the SUT ran with `--store store`.
fn fixture_with_store(parent: &Path, store: &str) -> PathBuf {
    let dir = fixture_copy(parent, &format!("small-run-{store}"));
    let mut run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    run["plan"]["store"] = store.into();
    std::fs::write(dir.join("run.json"), run.to_string()).unwrap();
    dir
}

#[test]
fn the_tuning_guide_compares_runs_that_differ_in_a_sut_setting() {
    let scratch = tempfile::tempdir().unwrap();
    let runs = [fixture_with_store(scratch.path(), "per-stat"), fixture_with_store(scratch.path(), "per-goal")];
    let out = scratch.path().join("report");
    report::render(&runs, &out, &Limits::default(), &CapacityModel::default(), report::Formats::All).expect("renders");
    let md = std::fs::read_to_string(out.join("performance-tuning.md")).unwrap();
    assert!(md.contains("## SUT settings compared"), "{md}");
    assert!(md.contains("These runs differ in `--store`"), "{md}");
    let summary = summary(&fixture());
    let worst = |a: f64, b: f64| a.max(b);
    let stat_p95 = format!(
        "{:.2}",
        worst(
            summary.operations["OnMessage stat"].latency_ms.p95,
            summary.operations["OnMessage login"].latency_ms.p95
        )
    );
    for store in ["per-stat", "per-goal"] {
        let row = row_with(&md, store);
        assert!(row[0].starts_with("small-run-"), "{row:?}");
        assert!(row.contains(&stat_p95.as_str()), "{row:?} shows the worse event p95 {stat_p95}");
    }
    // The fixture alone varies nothing.
    let (_keep, single) = rendered();
    let md = std::fs::read_to_string(single.join("performance-tuning.md")).unwrap();
    assert!(!md.contains("SUT settings compared") && md.contains("No run in this set varied a SUT setting"));
}

#[test]
fn a_run_rendered_while_still_partial_is_named_by_its_final_name() {
    let scratch = tempfile::tempdir().unwrap();
    let partial = fixture_copy(scratch.path(), "scenario3-default.partial");
    let out = partial.join("report");
    report::render(&[partial], &out, &Limits::default(), &CapacityModel::default(), report::Formats::All).unwrap();
    for stem in report::DOCUMENTS {
        let md = std::fs::read_to_string(out.join(format!("{stem}.md"))).unwrap();
        assert!(!md.contains(".partial") && !md.contains("-partial"), "{stem} names the folder being written");
    }
    let tuning = std::fs::read_to_string(out.join("performance-tuning.md")).unwrap();
    assert!(tuning.contains("From `scenario3-default`"), "the run is named by its final name");
    for chart in std::fs::read_dir(out.join("charts")).unwrap() {
        let name = chart.unwrap().file_name().to_string_lossy().into_owned();
        assert!(name.starts_with("scenario3-default-") && !name.contains("partial"), "{name}");
    }
}

/// A copy of the fixture as if run with `n` replicas of each service, its rates (offered and
/// achieved) scaled by `speedup`.
fn fixture_with_replicas(parent: &Path, n: u32, speedup: f64) -> PathBuf {
    let dir = fixture_copy(parent, &format!("small-run-x{n}"));
    let mut run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    run["plan"]["replicas"] = serde_json::json!({"challenge_service": n, "event_handler": n});
    std::fs::write(dir.join("run.json"), run.to_string()).unwrap();
    let mut summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    for operation in summary["operations"].as_object_mut().unwrap().values_mut() {
        for rate in ["target_rate", "achieved_rate"] {
            if let Some(value) = operation[rate].as_f64() {
                operation[rate] = (value * speedup).into();
            }
        }
    }
    std::fs::write(dir.join("summary.json"), summary.to_string()).unwrap();
    dir
}

#[test]
fn the_capacity_guide_fits_the_law_across_replica_counts_and_sizes_the_tiers_by_it() {
    // Throughput that follows a known law over 1–4 replicas: α 0.1, β 0.01 (peak S ≈ 3.5 at N ≈ 9.5).
    let speedup = |n: f64| n / (1.0 + 0.1 * (n - 1.0) + 0.01 * n * (n - 1.0));
    let parent = tempfile::tempdir().unwrap();
    let folders: Vec<PathBuf> =
        (1..=4).map(|n| fixture_with_replicas(parent.path(), n, speedup(f64::from(n)))).collect();
    let out = parent.path().join("report");
    report::render(&folders, &out, &Limits::default(), &CapacityModel::default(), report::Formats::MarkdownOnly)
        .unwrap();
    let guide = std::fs::read_to_string(out.join("capacity-planning.md")).unwrap();
    let section = guide.split("## Scaling across replicas").nth(1).expect("the section").split("\n## ").next().unwrap();
    // Per replica count: the sustained level (one instance: 20 rps + 50 eps) and its efficiency.
    assert!(row_with(section, "1").contains(&"100%"), "{section}");
    let four = row_with(section, "4");
    assert!(four.contains(&"197/s") && four.contains(&"70%"), "X(4) = 70 × 2.817: {four:?}");
    let law = row_with(section, "70.0/s");
    assert_eq!(law[1..4], ["0.1000", "1.00e-2", "1.000"], "the law recovered: {law:?}");
    // The tiers follow the law: one instance plans 14 rps and 35 eps (30% headroom); 10,000 DAU
    // peak at 10.4 rps (1 replica) and 104.2 eps, a speedup of 2.98: S(4) = 2.82, S(5) = 3.13.
    let tiers = guide.split("## Load tiers").nth(1).unwrap();
    let tier = row_with(tiers, "10000");
    assert_eq!((tier[3], tier[4]), ("1", "5"), "{tier:?}");
    // 100,000 DAU need a speedup of 29.8: past the law's peak.
    assert_eq!(row_with(tiers, "100000")[4], "beyond the fitted peak", "{tiers}");
    assert!(tiers.contains("under the law across replicas") && tiers.contains("never reaches"), "{tiers}");
}
