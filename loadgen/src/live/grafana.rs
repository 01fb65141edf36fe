//! The Grafana dashboard and alert rules of `docker/grafana/`, generated from the metrics loadgen
//! exports ([`super::metrics`]) and the SUT's, and from the plan's limits, so the committed files
//! cannot drift from either (a test regenerates and compares them).

use serde_json::{Value, json};

use crate::target::operations::Operation;
use crate::verdict::limits::Limits;

/// The Prometheus data source's uid in the provisioned Grafana.
pub const DATASOURCE_UID: &str = "gauntlet-prometheus";

/// A PromQL regex matching the operations judged against the API p95 limit.
fn api_operations() -> String {
    Operation::ALL.iter().filter(|op| op.is_rest()).map(|op| regex_escape(op.name())).collect::<Vec<_>>().join("|")
}

/// A PromQL regex matching the operations judged against the event p95 limit.
fn event_operations() -> String {
    Operation::ALL.iter().filter(|op| op.is_grpc()).map(|op| regex_escape(op.name())).collect::<Vec<_>>().join("|")
}

fn regex_escape(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push_str("\\\\");
        }
        out.push(c);
    }
    out
}

/// The `q` quantile per operation of histogram `metric`'s series matching `selector` (`{…}` or
/// empty), over the last `window`.
fn quantile(q: &str, metric: &str, selector: &str, window: &str) -> String {
    format!("histogram_quantile({q}, sum by (le, operation) (rate({metric}_bucket{selector}[{window}])))")
}

fn datasource() -> Value {
    json!({"type": "prometheus", "uid": DATASOURCE_UID})
}

fn panel(id: u32, title: &str, unit: &str, (x, y): (u32, u32), targets: &[(&str, &str)]) -> Value {
    let targets: Vec<Value> = targets
        .iter()
        .enumerate()
        .map(|(i, (expr, legend))| {
            json!({"refId": ((b'A' + i as u8) as char).to_string(), "datasource": datasource(), "expr": expr, "legendFormat": legend})
        })
        .collect();
    json!({
        "id": id, "type": "timeseries", "title": title, "datasource": datasource(),
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": targets,
    })
}

/// The dashboard: loadgen's rates, failures and latencies beside the SUT's own figures.
pub fn dashboard() -> Value {
    let p = |q: &str, metric: &str| quantile(q, metric, "", "30s");
    let panels = vec![
        panel(
            1,
            "Offered vs achieved rate",
            "reqps",
            (0, 0),
            &[
                ("sum by (operation) (gauntlet_target_rate)", "{{operation}} offered"),
                ("sum by (operation) (rate(gauntlet_requests_total[30s]))", "{{operation}} achieved"),
            ],
        ),
        panel(
            2,
            "Dropped arrivals and errors",
            "reqps",
            (12, 0),
            &[
                ("sum by (operation) (rate(gauntlet_dropped_arrivals_total[30s]))", "{{operation}} dropped"),
                ("sum by (operation, kind) (rate(gauntlet_errors_total[30s]))", "{{operation}} {{kind}}"),
            ],
        ),
        panel(
            3,
            "Latency from the intended send (p50, p95, p99)",
            "s",
            (0, 8),
            &[
                (&p("0.5", "gauntlet_request_duration_seconds"), "{{operation}} p50"),
                (&p("0.95", "gauntlet_request_duration_seconds"), "{{operation}} p95"),
                (&p("0.99", "gauntlet_request_duration_seconds"), "{{operation}} p99"),
            ],
        ),
        panel(
            4,
            "Service time (p50, p95, p99)",
            "s",
            (12, 8),
            &[
                (&p("0.5", "gauntlet_service_time_seconds"), "{{operation}} p50"),
                (&p("0.95", "gauntlet_service_time_seconds"), "{{operation}} p95"),
                (&p("0.99", "gauntlet_service_time_seconds"), "{{operation}} p99"),
            ],
        ),
        panel(
            5,
            "SUT CPU (cores)",
            "none",
            (0, 16),
            &[("rate(process_cpu_seconds_total{job=\"gauntlet-sut\"}[30s])", "{{instance}}")],
        ),
        panel(
            6,
            "SUT resident memory",
            "bytes",
            (12, 16),
            &[("process_resident_memory_bytes{job=\"gauntlet-sut\"}", "{{instance}}")],
        ),
        panel(
            7,
            "Database pool busy share",
            "percentunit",
            (0, 24),
            &[("db_pool_connections_active / db_pool_connections_max", "{{instance}}")],
        ),
        panel(
            8,
            "Event buffer (accepted, not yet written)",
            "none",
            (12, 24),
            &[("event_buffer_size", "{{instance}} buffered"), ("event_buffer_limit", "{{instance}} limit")],
        ),
        panel(
            9,
            "SUT REST requests by status",
            "reqps",
            (0, 32),
            &[("sum by (status) (rate(http_requests_total[30s]))", "{{status}}")],
        ),
        panel(
            10,
            "SUT events received and refused",
            "reqps",
            (12, 32),
            &[
                ("sum by (event_type) (rate(events_received_total[30s]))", "received {{event_type}}"),
                ("sum by (reason) (rate(events_rejected_total[30s]))", "refused {{reason}}"),
            ],
        ),
        panel(11, "Calls in flight", "none", (0, 40), &[("sum by (operation) (gauntlet_in_flight)", "{{operation}}")]),
        panel(12, "Async runtime: alive tasks", "none", (12, 40), &[("tokio_alive_tasks", "{{instance}}")]),
    ];
    json!({
        "uid": "gauntlet", "title": "Gauntlet: load and the system under test",
        "tags": ["gauntlet"], "timezone": "utc", "schemaVersion": 39, "version": 1,
        "refresh": "5s", "time": {"from": "now-30m", "to": "now"},
        "panels": panels,
    })
}

/// Every metric the dashboard and the rules query.
pub fn queried_metrics() -> Vec<String> {
    let mut text = dashboard().to_string();
    text.push_str(&alert_rules(&Limits::default()));
    let mut names: Vec<String> = Vec::new();
    let mut word = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        let metric = word.strip_suffix("_bucket").unwrap_or(&word);
        let known = ["gauntlet_", "process_", "db_pool_", "event_buffer_", "http_requests", "events_", "tokio_"];
        if known.iter().any(|p| metric.starts_with(p)) && !names.iter().any(|n| n == metric) {
            names.push(metric.to_owned());
        }
        word.clear();
    }
    names
}

/// One alert rule: `expr` (an instant vector) above `limit` for `for_` fires.
fn rule(uid: &str, title: &str, expr: &str, limit: f64, summary: &str) -> String {
    format!(
        r#"      - uid: {uid}
        title: {title}
        condition: C
        for: 30s
        noDataState: OK
        execErrState: Error
        labels: {{severity: warning, source: gauntlet}}
        annotations:
          summary: "{summary}"
        data:
          - refId: A
            relativeTimeRange: {{from: 300, to: 0}}
            datasourceUid: {DATASOURCE_UID}
            model: {{refId: A, instant: true, expr: '{expr}'}}
          - refId: C
            datasourceUid: __expr__
            model:
              refId: C
              type: threshold
              expression: A
              conditions:
                - evaluator: {{type: gt, params: [{limit}]}}
"#
    )
}

/// Grafana's alert rules (its provisioning format) for `limits`: a p95 over the API or event
/// limit, errors or drops over their share, for 30 s; and the SUT's event buffer above 80% of
/// its limit.
pub fn alert_rules(limits: &Limits) -> String {
    let p95 =
        |ops: String| quantile("0.95", "gauntlet_request_duration_seconds", &format!("{{operation=~\"{ops}\"}}"), "1m");
    let mut out = String::from(
        "# Generated by loadgen (live::grafana) from the plan's limits; `cargo test` checks it is current.\n\
         apiVersion: 1\ngroups:\n  - orgId: 1\n    name: gauntlet-limits\n    folder: Gauntlet\n    interval: 10s\n    rules:\n",
    );
    out.push_str(&rule(
        "gauntlet-api-p95",
        "API p95 over the limit",
        &p95(api_operations()),
        limits.api_p95_ms / 1000.0,
        &format!("API p95 from the intended send is above {} ms", limits.api_p95_ms),
    ));
    out.push_str(&rule(
        "gauntlet-event-p95",
        "Event p95 over the limit",
        &p95(event_operations()),
        limits.event_p95_ms / 1000.0,
        &format!("event p95 from the intended send is above {} ms", limits.event_p95_ms),
    ));
    out.push_str(&rule(
        "gauntlet-error-rate",
        "Error share over the limit",
        "sum by (operation) (rate(gauntlet_requests_total{outcome=\"error\"}[1m])) / sum by (operation) (rate(gauntlet_requests_total[1m]))",
        limits.error_rate,
        &format!("more than {}% of an operation's requests fail", limits.error_rate * 100.0),
    ));
    out.push_str(&rule(
        "gauntlet-dropped",
        "Dropped arrivals over the limit",
        "sum by (operation) (rate(gauntlet_dropped_arrivals_total[1m])) / sum by (operation) (rate(gauntlet_scheduled_arrivals_total[1m]))",
        limits.dropped_rate,
        &format!("more than {}% of an operation's arrivals were not sent", limits.dropped_rate * 100.0),
    ));
    out.push_str(&rule(
        "gauntlet-event-buffer",
        "Event buffer nearly full",
        "event_buffer_size / event_buffer_limit",
        0.8,
        "the event handler's buffer is above 80% of its limit: events will soon be refused",
    ));
    out
}
