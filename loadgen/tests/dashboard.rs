//! The live dashboard, seen from outside: the `loadgen` binary runs a short scenario 3 against
//! the provisioned SUT with `--dashboard`; meanwhile headless Chromium (the distribution's
//! package) opens the page mid-run and a client reads the event stream, reconnects and is
//! replayed the run so far, and scrapes `/metrics`. At the end the numbers the page shows are
//! checked against `summary.json`, and every metric the Grafana dashboard queries is one that
//! loadgen or the SUT exports.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use loadgen::live::grafana;
use loadgen::live::metrics::METRICS;

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("the chromium package is installed (.ci/run installs it)")
}

/// Lines of the child's stderr, as they come.
fn lines_of(child: &mut std::process::Child) -> Receiver<String> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits (at most `within`) for a line containing `needle`; returns it.
fn wait_for(lines: &Receiver<String>, needle: &str, within: Duration, seen: &mut Vec<String>) -> String {
    let deadline = std::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
            Err(_) => panic!("no line with {needle:?}; stderr so far:\n{}", seen.join("\n")),
        }
    }
}

/// The SSE events of one connection (`event` name, `data`) until `enough` says stop.
async fn read_events(url: &str, enough: impl Fn(&[(String, String)]) -> bool) -> Vec<(String, String)> {
    let mut response = reqwest::get(url).await.expect("the event stream answers");
    assert_eq!(
        response.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("text/event-stream"),
        "server-sent events"
    );
    let (mut events, mut buffer) = (Vec::new(), String::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !enough(&events) {
        let chunk = tokio::time::timeout_at(deadline, response.chunk()).await.expect("events keep coming");
        let Some(chunk) = chunk.expect("the stream reads") else { break };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut name, mut data) = (String::new(), String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if !name.is_empty() {
                events.push((name, data));
            }
        }
    }
    events
}

fn seconds_of(events: &[(String, String)]) -> Vec<u64> {
    events
        .iter()
        .filter(|(name, _)| name == "second")
        .map(|(_, data)| serde_json::from_str::<serde_json::Value>(data).unwrap()["t"].as_u64().unwrap())
        .collect()
}

/// Every `# TYPE` name of a Prometheus text page.
fn metric_types(text: &str) -> BTreeMap<String, String> {
    let (types, _) = loadgen::observe::prometheus::parse(text);
    types.into_iter().collect()
}

/// The text of the cell `data-field="{field}"` in the operations row of `operation`.
fn cell(dom: &str, operation: &str, field: &str) -> String {
    let row_start = dom
        .find(&format!("data-operation=\"{operation}\""))
        .unwrap_or_else(|| panic!("the page shows a row for {operation}"));
    let row = &dom[row_start..];
    let row = &row[..row.find("</tr>").unwrap()];
    let at = row.find(&format!("data-field=\"{field}\">")).unwrap() + field.len() + 14;
    row[at..at + row[at..].find('<').unwrap()].to_owned()
}

/// `data-points` of the canvas whose tag contains `marker`.
fn points(dom: &str, marker: &str) -> u64 {
    let at = dom.find(marker).unwrap_or_else(|| panic!("a canvas with {marker}"));
    let tag_start = dom[..at + "<canvas".len()].rfind("<canvas").unwrap();
    let tag = &dom[tag_start..tag_start + dom[tag_start..].find('>').unwrap()];
    tag.split("data-points=\"").nth(1).map_or(0, |rest| rest[..rest.find('"').unwrap()].parse().unwrap())
}

#[test]
fn the_dashboard_shows_the_run_live_and_its_numbers_match_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["scenario3", "--duration", "15s", "--rps", "60", "--eps", "200", "--audit-users", "100"])
        .args(["--dashboard", "127.0.0.1:0", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut child);
    let mut seen = Vec::new();
    let announced = wait_for(&lines, "live dashboard at ", Duration::from_secs(60), &mut seen);
    let url = announced.split("live dashboard at ").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    assert!(url.starts_with("http://127.0.0.1:") && url.ends_with('/'), "{url}");
    // The first run of a fresh checkout builds the SUT's services first.
    wait_for(&lines, "load begins", Duration::from_secs(900), &mut seen);

    // The browser opens the page mid-run; it dumps the page once the stream has ended (its
    // virtual clock waits for open fetches), so the DOM is the page as the run left it.
    let browser = {
        let url = url.clone();
        std::thread::spawn(move || {
            // Bounded (coreutils' timeout): a browser that never finishes fails the test, never hangs it.
            Command::new("timeout")
                .arg("300")
                .arg(chromium())
                .args(["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1300,2400"])
                .args(["--virtual-time-budget=3000", "--dump-dom", &url])
                .stderr(Stdio::null())
                .output()
                .expect("chromium runs")
        })
    };

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sut_metrics_urls = runtime.block_on(async {
        let events_url = format!("{url}events");
        let first = read_events(&events_url, |e| seconds_of(e).len() >= 3).await;
        assert_eq!(first[0].0, "hello", "each connection starts afresh");
        assert!(first.iter().any(|(name, _)| name == "run"), "the run's start is replayed: {first:?}");
        let before = seconds_of(&first);
        // Reconnect: the run so far comes again, in order, then what is new.
        let again = read_events(&events_url, |e| seconds_of(e).len() > before.len()).await;
        assert_eq!(again[0].0, "hello");
        let replayed = seconds_of(&again);
        assert_eq!(&replayed[..before.len()], &before[..], "the seconds seen before, replayed in order");
        assert!(replayed.windows(2).all(|w| w[1] == w[0] + 1), "no second missing or doubled: {replayed:?}");

        let text = reqwest::get(format!("{url}metrics")).await.unwrap().text().await.unwrap();
        let types = metric_types(&text);
        for (name, kind, _) in METRICS {
            assert_eq!(types.get(name).map(String::as_str), Some(kind), "{name} exported:\n{text}");
        }
        let ok: f64 = loadgen::observe::prometheus::parse(&text)
            .1
            .iter()
            .filter(|s| s.name == "gauntlet_requests_total")
            .map(|s| s.value)
            .sum();
        assert!(ok > 0.0, "requests counted so far:\n{text}");

        let run_json = std::fs::read_to_string(format!("{}.partial/run.json", out.display())).unwrap();
        let run: serde_json::Value = serde_json::from_str(&run_json).unwrap();
        let mut urls: Vec<String> = run["endpoints"]["metrics_urls"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        urls.push(format!("{url}metrics"));
        let mut exported = BTreeSet::new();
        for metrics_url in &urls {
            let text = reqwest::get(metrics_url).await.unwrap().text().await.unwrap();
            exported.extend(metric_types(&text).into_keys());
        }
        exported
    });
    for metric in grafana::queried_metrics() {
        assert!(
            sut_metrics_urls.contains(&metric),
            "Grafana queries {metric}, which no one exports: {sut_metrics_urls:?}"
        );
    }

    let status = child.wait().unwrap();
    for line in lines.try_iter() {
        seen.push(line);
    }
    // The browser starting on a 2-core machine can break a latency threshold: the run's verdict
    // is whatever it is, and the page must say the same.
    assert!(matches!(status.code(), Some(0 | 99)), "loadgen finished the run: {status}\n{}", seen.join("\n"));
    let browsed = browser.join().unwrap();
    assert!(browsed.status.success(), "chromium dumped the page: {}", browsed.status);
    let dom = String::from_utf8(browsed.stdout).unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let verdict = if summary["passed"].as_bool().unwrap() { "passed" } else { "failed" };
    assert!(dom.contains(&format!("data-state=\"{verdict}\"")), "the page says the run {verdict}:\n{dom}");
    let operations = summary["operations"].as_object().unwrap();
    assert!(operations.len() >= 3, "scenario 3's operations");
    for (name, op) in operations {
        for field in ["requests", "errors", "dropped"] {
            assert_eq!(
                cell(&dom, name, field),
                op[field].as_u64().unwrap().to_string(),
                "{name} {field}: the page's count is the summary's"
            );
        }
        assert!(points(&dom, &format!("<canvas data-operation=\"{name}\"")) >= 10, "{name}'s latency chart filled");
    }
    for chart in ["chart-rate", "chart-cpu", "chart-memory", "chart-database", "chart-buffer"] {
        assert!(points(&dom, &format!("id=\"{chart}\"")) >= 10, "{chart} filled:\n{dom}");
    }
    for threshold in summary["thresholds"].as_array().unwrap() {
        let label = format!("{} {}", threshold["metric"].as_str().unwrap(), threshold["expression"].as_str().unwrap());
        // Serialised as an attribute: `<` and `>` are escaped too, by today's browsers.
        let escaped = label.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;");
        let row = [escaped, label.replace('"', "&quot;")]
            .iter()
            .find_map(|l| dom.find(&format!("data-threshold=\"{l}\"")))
            .unwrap_or_else(|| panic!("{label} shown:\n{dom}"));
        let cells: Vec<&str> = dom[row..dom[row..].find("</tr>").unwrap() + row]
            .split("<td")
            .skip(1)
            .map(|td| &td[td.find('>').unwrap() + 1..td.find("</td>").unwrap()])
            .collect();
        // Thresholds the engine's numbers decide stand at the run's value once it is over; the
        // audit's and the samplers' are judged at the end only.
        match threshold["value"].as_f64() {
            Some(value) if cells[1] != "–" => {
                assert_eq!(cells[1], format!("{value:.4}"), "{label}: the page's value is the summary's");
                let state = if threshold["passed"].as_bool().unwrap() { "passing" } else { "failing" };
                assert_eq!(cells[2], state, "{label}");
            }
            _ => assert_eq!(cells[2], "judged at the end", "{label}"),
        }
    }
    assert!(dom.contains("/report/performance-baseline.html\""), "the page links the finished reports");
}

#[test]
fn a_dashboard_address_in_use_is_named_before_anything_starts() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["scenario1", "--duration", "5s", "--dashboard", &addr, "--out"])
        .arg(dir.path().join("run"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("the dashboard cannot listen on {addr}")), "{stderr}");
    assert!(!dir.path().join("run.partial").exists() && !dir.path().join("run").exists(), "nothing was started");
}

#[test]
fn the_committed_grafana_files_are_the_generated_ones() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/grafana");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("dashboards/gauntlet.json")).unwrap()).unwrap();
    assert_eq!(dashboard, grafana::dashboard(), "regenerate with `loadgen grafana docker/grafana`");
    let rules = std::fs::read_to_string(root.join("provisioning/alerting/gauntlet.yaml")).unwrap();
    assert_eq!(rules, grafana::alert_rules(&Default::default()), "regenerate with `loadgen grafana docker/grafana`");
    let parsed: serde_yaml::Value = serde_yaml::from_str(&rules).expect("the rules are YAML");
    assert_eq!(parsed["groups"][0]["rules"].as_sequence().map(Vec::len), Some(5));
}
