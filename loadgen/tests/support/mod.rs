//! In-process targets whose behaviour is known, and the engine run against them: a REST
//! endpoint with a fixed delay, an optional stall and optional instant failures, and a gRPC
//! event handler with a fixed delay and an optional stall.
//!
//! Runs share goose's process-wide stop switch, so within one test binary they take turns.

#![allow(dead_code)] // each test binary uses its own part

pub mod process;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use loadgen::definition::executor::Executor;
use loadgen::definition::plan::{Segment, StreamPlan};
use loadgen::engine::recorder::{OperationTotals, Recorder};
use loadgen::engine::stop::Stop;
use loadgen::engine::workload::{RestAuth, Workload};
use loadgen::engine::{self, EngineOptions, EngineOutcome};
use loadgen::target::operations::Operation;
use loadgen::target::operations::OperationKind;
use proto::statistic::StatItemUpdated;
use proto::statistic::statistic_stat_item_updated_service_server::{
    StatisticStatItemUpdatedService, StatisticStatItemUpdatedServiceServer,
};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

pub static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Holds every response from its `stall_at`-th request (its own and the concurrent ones) for
/// `stall`.
#[derive(Clone, Default)]
pub struct Stall {
    pub stall_at: u64,
    pub stall: Duration,
    count: Arc<AtomicU64>,
    until: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Stall {
    pub fn at(stall_at: u64, stall: Duration) -> Self {
        Self { stall_at, stall, ..Self::default() }
    }

    pub fn none() -> Self {
        Self::default()
    }

    /// Counts a request; returns its number (1-based).
    async fn pass(&self, delay: Duration) -> u64 {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if n == self.stall_at {
            *self.until.lock().unwrap() = Some(Instant::now() + self.stall);
        }
        tokio::time::sleep(delay).await;
        let until = *self.until.lock().unwrap();
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
        n
    }
}

/// A REST endpoint answering after `delay`; with `fail_every_other`, every second request is an
/// instant 503.
#[derive(Clone)]
pub struct SlowEndpoint {
    pub delay: Duration,
    pub stall: Stall,
    pub fail_every_other: bool,
    failures: Arc<AtomicU64>,
}

impl SlowEndpoint {
    pub fn new(delay: Duration, stall: Stall) -> Self {
        Self { delay, stall, fail_every_other: false, failures: Arc::default() }
    }

    async fn answer(&self) -> (StatusCode, &'static str) {
        if self.fail_every_other && self.failures.fetch_add(1, Ordering::Relaxed) % 2 == 0 {
            return (StatusCode::SERVICE_UNAVAILABLE, "busy");
        }
        self.stall.pass(self.delay).await;
        (StatusCode::OK, "{\"challenges\":[]}")
    }
}

/// Serves `endpoint` at `/v1/challenges` (and `/healthz`), also under `/challenge`, on a loopback
/// port; returns its URL.
pub async fn rest_server(endpoint: SlowEndpoint) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = Router::new().route("/healthz", get(|| async { "ok" })).route(
        "/v1/challenges",
        get(move || {
            let endpoint = endpoint.clone();
            async move { endpoint.answer().await }
        }),
    );
    // At the root, and under the challenge service's default base path.
    let app = routes.clone().nest("/challenge", routes);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

struct TrivialHandler {
    delay: Duration,
    stall: Stall,
}

#[tonic::async_trait]
impl StatisticStatItemUpdatedService for TrivialHandler {
    async fn on_message(&self, _: tonic::Request<StatItemUpdated>) -> Result<tonic::Response<()>, tonic::Status> {
        self.stall.pass(self.delay).await;
        Ok(tonic::Response::new(()))
    }
}

/// A gRPC event handler answering after `delay`, stalling as `stall` says.
pub async fn grpc_server_with(delay: Duration, stall: Stall) -> Channel {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .max_concurrent_streams(Some(4096))
            .add_service(StatisticStatItemUpdatedServiceServer::new(TrivialHandler { delay, stall }))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

/// A gRPC event handler answering after `delay`.
pub async fn grpc_server(delay: Duration) -> Channel {
    grpc_server_with(delay, Stall::none()).await
}

pub fn workload(channels: Vec<Channel>) -> Arc<Workload> {
    Arc::new(Workload {
        users: Arc::new((1..=100).map(|i| format!("user-{i:06}")).collect()),
        reserved_for_probes: 0,
        namespace: "test".into(),
        auth: RestAuth::MockHeader,
        base_path: String::new(),
        channels: channels.into_iter().map(|c| vec![c]).collect(),
        balance: loadgen::definition::options::Balance::default(),
        request_timeout: Duration::from_secs(10),
        recorder: Arc::new(Recorder::new()),
        probe_values: AtomicU64::new(0),
        ledger: Arc::new(loadgen::engine::ledger::Ledger::new(100, 0)),
        event_retries: 0,
        stampede: None,
    })
}

pub fn constant(rate: f64, seconds: u64, max_vus: u32) -> Executor {
    Executor::ConstantArrivalRate {
        rate,
        duration: Duration::from_secs(seconds),
        pre_allocated_vus: max_vus,
        max_vus,
        poisson: false,
    }
}

/// Runs one stream of `op` and returns the engine's outcome and the operation's totals.
pub async fn run_stream(
    executor: Executor,
    op: OperationKind,
    workload: Arc<Workload>,
    api_url: Option<String>,
    max_lateness: Duration,
) -> (EngineOutcome, OperationTotals) {
    run_stopped(executor, op, workload, api_url, max_lateness, Stop::new()).await
}

/// [`run_stream`] that `stop` may stop early.
pub async fn run_stopped(
    executor: Executor,
    op: OperationKind,
    workload: Arc<Workload>,
    api_url: Option<String>,
    max_lateness: Duration,
    stop: Stop,
) -> (EngineOutcome, OperationTotals) {
    let _turn = ONE_RUN_AT_A_TIME.lock().await;
    let streams = vec![StreamPlan {
        name: "load".into(),
        executor,
        operations: BTreeMap::from([(op, 1)]),
        segment: Segment::WHOLE,
    }];
    let gate = engine::start_gate(&streams, Duration::from_millis(200));
    let options =
        EngineOptions { api_urls: api_url.into_iter().collect(), lead: Duration::from_millis(200), max_lateness, stop };
    let outcome = engine::run(streams, workload.clone(), gate, options).await.expect("engine runs");
    let kind = if op == OperationKind::Stat { Operation::Stat } else { Operation::GetChallenges };
    let totals = workload.recorder.totals().into_iter().find(|t| t.operation == kind).unwrap();
    (outcome, totals)
}

/// [`run_stream`] for a run that must not stop early.
pub async fn run(
    executor: Executor,
    op: OperationKind,
    workload: Arc<Workload>,
    api_url: Option<String>,
    max_lateness: Duration,
) -> OperationTotals {
    let (outcome, totals) = run_stream(executor, op, workload, api_url, max_lateness).await;
    assert!(outcome.stopped.is_none(), "{:?}", outcome.stopped);
    totals
}

pub fn ms(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Options of a short run against the provisioned SUT writing to `out`, auditing `audit_users`.
pub fn provisioned_args(out: &std::path::Path, audit_users: usize) -> loadgen::definition::options::RunArgs {
    loadgen::definition::options::RunArgs {
        out: Some(out.join("run")),
        namespace: "test".into(),
        base_path: "/challenge".into(),
        grpc_connections: 1,
        request_timeout: Duration::from_secs(5),
        max_duration: Duration::from_secs(120),
        audit_users,
        audit_settle: Duration::from_secs(20),
        quiet: true,
        ..loadgen::definition::options::RunArgs::default()
    }
}
