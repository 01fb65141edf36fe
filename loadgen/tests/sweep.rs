//! The sweep against a server whose capacity is known: it answers at most N requests per second
//! (a token bucket) and refuses the rest with 503, so the sweep must find N.
//!
//! Run with: `cargo test -p loadgen --test sweep`

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use loadgen::definition::options::RunArgs;
use loadgen::sweep::{self, SweepArgs, SweepMode};
use tokio::time::Instant;

/// Requests per second the server can take.
const CAPACITY: f64 = 300.0;

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A request may pass when a token is left; tokens refill at CAPACITY/s, bursts of 50 ms.
    fn admit(&mut self) -> bool {
        let now = Instant::now();
        let burst = CAPACITY / 20.0;
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * CAPACITY).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

async fn limited_server() -> String {
    let bucket = Arc::new(Mutex::new(Bucket { tokens: CAPACITY / 20.0, at: Instant::now() }));
    let app = Router::new().route("/challenge/healthz", get(|| async { "ok" })).route(
        "/challenge/v1/challenges",
        get(move || {
            let admitted = bucket.lock().unwrap().admit();
            async move {
                if admitted {
                    (StatusCode::OK, "{\"challenges\":[]}")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "{\"code\":\"UNAVAILABLE\",\"message\":\"over capacity\"}")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_finds_a_known_capacity_within_ten_percent() {
    let api_url = limited_server().await;
    let out = tempfile::tempdir().unwrap();
    let args = SweepArgs {
        mode: SweepMode::Api,
        api_levels: vec![100.0, 200.0, 400.0, 800.0],
        event_levels: vec![],
        level_duration: Duration::from_secs(3),
        warmup: Duration::from_secs(1),
        precision: 0.05,
        replica_counts: vec![],
        limits: sweep::LimitArgs {
            max_error_rate: 0.01,
            max_api_p95: Duration::from_secs(2),
            max_event_p95: Duration::from_millis(500),
            max_dropped: 0.01,
        },
        run: RunArgs {
            api_url: Some(api_url),
            mock_auth: true,
            namespace: "test".into(),
            base_path: "/challenge".into(),
            grpc_connections: 1,
            request_timeout: Duration::from_secs(5),
            max_duration: Duration::from_secs(60),
            ..RunArgs::default()
        },
    };
    let dir = out.path().join("sweep");
    let capacity = sweep::run(args, &dir, &loadgen::live::Live::new()).await.expect("the sweep runs");
    assert_eq!(capacity.interrupted, None);
    let search = &capacity.searches[0];
    let found = search.max_sustainable.expect("a sustainable level").rps;
    let levels: Vec<(f64, bool)> = search.levels.iter().map(|l| (l.level.rps, l.passed)).collect();
    assert!((found - CAPACITY).abs() / CAPACITY <= 0.10, "found {found} rps for a capacity of {CAPACITY}: {levels:?}");
    let (broken, why) = search.first_broken.as_ref().expect("a level broke the limits");
    assert!(broken.rps > found && why.contains("errors"), "{broken:?}: {why}");
    // The ladder stopped at the first bad level: 800 was never tried.
    assert!(levels.iter().all(|(rps, _)| *rps < 800.0), "{levels:?}");
    // What it wrote: capacity.json, one folder per level, the report across levels.
    let saved: sweep::Capacity =
        serde_json::from_str(&std::fs::read_to_string(dir.join("capacity.json")).unwrap()).unwrap();
    assert_eq!(saved, capacity);
    for level in &search.levels {
        assert!(dir.join(&level.folder).join("summary.json").is_file(), "{}", level.folder);
        // Achieved rates divide by the seconds the schedule ran, not one more.
        let get = &level.operations["GET /v1/challenges"];
        if level.passed {
            let off = (get.achieved_rate - level.level.rps).abs() / level.level.rps;
            assert!(off <= 0.02, "{}: achieved {} for {} rps", level.folder, get.achieved_rate, level.level.rps);
        }
    }
    assert!(dir.join("report/performance-baseline.html").is_file());
}
