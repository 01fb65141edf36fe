//! Is the harness truthful under overload? Every scheduled arrival is accounted for, the
//! dropped ones show how late they were, a full generator pool is named as such, and failed
//! requests are kept out of the default latency figures.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use loadgen::definition::executor::auto_pool;
use loadgen::definition::threshold::{Metric, ThresholdExpr};
use loadgen::engine::recorder::OperationTotals;
use loadgen::results::summary::{self, OperationSummary};
use loadgen::target::operations::Operation;
use loadgen::target::operations::OperationKind;
use loadgen::verdict::limits::{Limits, POOL_EXHAUSTED, first_broken, pool_full_share};
use loadgen::verdict::source::{Measurements, MetricSource};
use support::{SlowEndpoint, Stall, constant, grpc_server_with, ms, rest_server, run, workload};

const LATENESS: Duration = Duration::from_millis(50);

fn summarise(totals: &OperationTotals, seconds: u64) -> OperationSummary {
    let ops = summary::operations(
        std::slice::from_ref(totals),
        &[totals.operation],
        &BTreeMap::new(),
        Duration::from_secs(seconds),
    );
    ops[totals.operation.name()].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_target_behind_a_small_pool_shows_the_overload_and_names_the_pool() {
    let url = rest_server(SlowEndpoint::new(Duration::from_millis(300), Stall::none())).await;
    // 100 users at 300 ms serve about 330/s of the 1,000/s offered.
    let totals =
        run(constant(1000.0, 4, 100), OperationKind::GetChallenges, workload(vec![]), Some(url.clone()), LATENESS)
            .await;
    let op = summarise(&totals, 4);
    assert_eq!(op.scheduled, Some(4000));
    assert_eq!(op.requests + op.dropped, 4000, "every arrival is a request or a drop");
    assert!(op.dropped >= 2000, "drops show: {}", op.dropped);
    let unserved = op.unserved_ms.expect("dropped arrivals have their lateness");
    assert!(unserved.p50 > LATENESS.as_secs_f64() * 1000.0, "each was dropped late: {unserved:?}");
    let all = op.all_arrivals_ms.expect("open model");
    assert!(all.p50 >= 50.0, "all arrivals, served or not: {all:?}");
    eprintln!("pool-full share {:.3}", pool_full_share(&op));
    assert!(pool_full_share(&op) > 0.9, "{} of {} drops found the pool full", op.dropped_pool_full, op.dropped);
    let warnings = summary::load_warnings(&BTreeMap::from([("GET /v1/challenges".to_owned(), op.clone())]), &[]);
    assert!(warnings.iter().any(|w| w.starts_with("GENERATOR POOL EXHAUSTED")), "{warnings:?}");
    let limits = Limits::default();
    let figures = [(
        "GET /v1/challenges",
        loadgen::verdict::limits::OperationFigures {
            error_rate: op.error_rate,
            dropped_rate: op.dropped_ratio,
            pool_full: pool_full_share(&op),
            p95_ms: op.latency_ms.p95,
        },
    )];
    let verdict = first_broken(figures.into_iter(), &limits).expect("the level broke");
    assert!(verdict.starts_with(POOL_EXHAUSTED), "not the target's capacity: {verdict}");

    // Sized as `max_vus: auto` is (rate × a 1 s limit), the same target loses nothing.
    let pool = auto_pool(1000.0, Duration::from_secs(1));
    let totals =
        run(constant(1000.0, 4, pool), OperationKind::GetChallenges, workload(vec![]), Some(url), LATENESS).await;
    assert_eq!((totals.requests(), totals.dropped()), (4000, 0), "a pool of {pool}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_at_the_end_leaves_no_arrival_unaccounted_for() {
    // Request 900 of 1,000 (at about 4.5 s of 5 s) holds every response for 2 s: the users are
    // still held when goose stops, with arrivals queued behind them.
    let stall = Stall::at(900, Duration::from_secs(2));
    let url = rest_server(SlowEndpoint::new(Duration::from_millis(1), stall)).await;
    let totals = run(constant(200.0, 5, 4), OperationKind::GetChallenges, workload(vec![]), Some(url), LATENESS).await;
    assert_eq!(totals.scheduled(), 1000);
    assert_eq!(
        totals.requests() + totals.dropped(),
        1000,
        "requests {} + dropped {}",
        totals.requests(),
        totals.dropped()
    );
    assert!(totals.dropped() >= 50, "the arrivals queued behind the stall: {}", totals.dropped());
    assert!(ms(&totals.unserved(), 1.0) >= 500.0, "and how late they were: {} ms", ms(&totals.unserved(), 1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_stall_at_five_thousand_per_second_the_stale_arrivals_go_in_one_pass() {
    // Call 10,000 (2 s into 6 s) holds every call for 1 s.
    let channel = grpc_server_with(Duration::from_millis(1), Stall::at(10_000, Duration::from_secs(1))).await;
    let totals = run(constant(5000.0, 6, 500), OperationKind::Stat, workload(vec![channel]), None, LATENESS).await;
    assert_eq!(totals.scheduled(), 30_000);
    assert_eq!(totals.requests() + totals.dropped(), 30_000);
    // About a second of arrivals found no user; nothing beyond it cascades.
    assert!((2_500..=5_500).contains(&totals.dropped()), "dropped {}", totals.dropped());
    assert!(ms(&totals.unserved(), 1.0) <= 1_300.0, "none waited past the stall: {}", ms(&totals.unserved(), 1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_failures_are_kept_out_of_the_expected_response_figures() {
    let mut endpoint = SlowEndpoint::new(Duration::from_millis(20), Stall::none());
    endpoint.fail_every_other = true;
    let url = rest_server(endpoint).await;
    let totals = run(constant(200.0, 3, 50), OperationKind::GetChallenges, workload(vec![]), Some(url), LATENESS).await;
    assert_eq!(totals.requests(), 600);
    assert_eq!(totals.errors(), 300, "{:?}", totals.errors_by_kind);
    let streams = ["load".to_owned()];
    let source = Measurements {
        operations: vec![(Operation::GetChallenges, &totals.measured)],
        streams: &streams,
        seconds: 3.0,
        extras: BTreeMap::new(),
        trends: &[],
    };
    let p95 = |metric: &str| {
        source.observe(&Metric::parse(metric).unwrap(), ThresholdExpr::parse("p(95)<1").unwrap().aggregation).unwrap()
    };
    let p50 = |metric: &str| {
        source.observe(&Metric::parse(metric).unwrap(), ThresholdExpr::parse("med<1").unwrap().aggregation).unwrap()
    };
    let successes = ms(&totals.service(), 0.95);
    assert_eq!(p95("http_req_duration{expected_response:true}"), successes, "the successes' p95");
    assert!(successes >= 20.0, "{successes}");
    assert!(p50("http_req_duration") < 20.0, "unfiltered, the instant 503s pull the median down");
    let op = summarise(&totals, 3);
    assert!(op.latency_ms.p50 >= 20.0, "the default figures are the successes': {:?}", op.latency_ms);
    assert!(op.failed_latency_ms.expect("failures have their own").p50 < 20.0);
    let all_failed =
        source.observe(&Metric::parse("http_req_failed").unwrap(), ThresholdExpr::parse("rate<1").unwrap().aggregation);
    assert_eq!(all_failed, Some(0.5));
    assert_eq!(
        source.observe(&Metric::parse("checks").unwrap(), ThresholdExpr::parse("rate>0").unwrap().aggregation),
        Some(0.5),
        "a check per request: status and body shape"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_run_still_accounts_for_what_came_due() {
    let url = rest_server(SlowEndpoint::new(Duration::from_millis(1), Stall::none())).await;
    let workload = workload(vec![]);
    let stop = loadgen::engine::stop::Stop::new();
    let stopper = stop.clone();
    let recorder = workload.recorder.clone();
    // Stops once 300 arrivals have come due (1.5 s of 10 s).
    tokio::spawn(async move {
        loop {
            let scheduled: u64 = recorder.totals().iter().map(|t| t.scheduled()).sum();
            if scheduled >= 300 {
                stopper.stop(loadgen::engine::stop::StopReason::Signal);
                return;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let (outcome, totals) = support::run_stopped(
        constant(200.0, 10, 10),
        OperationKind::GetChallenges,
        workload.clone(),
        Some(url),
        LATENESS,
        stop,
    )
    .await;
    assert_eq!(outcome.stopped, Some(loadgen::engine::stop::StopReason::Signal));
    assert!(totals.scheduled() < 2000, "arrivals after the stop never came due: {}", totals.scheduled());
    assert_eq!(totals.requests() + totals.dropped(), totals.scheduled());
}
