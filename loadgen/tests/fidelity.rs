//! Is the harness truthful on a healthy target? The engine against in-process servers whose
//! behaviour is known: a trivial gRPC event handler and a REST endpoint with a fixed delay and
//! an optional stall.

mod support;

use std::time::Duration;

use loadgen::definition::executor::Executor;
use loadgen::target::operations::OperationKind;
use support::{SlowEndpoint, Stall, constant, grpc_server, ms, rest_server, run, workload};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_calls_per_second_for_ten_seconds_are_delivered_within_one_percent() {
    let channel = grpc_server(Duration::from_millis(1)).await;
    let totals =
        run(constant(5000.0, 10, 500), OperationKind::Stat, workload(vec![channel]), None, Duration::from_millis(50))
            .await;
    let sent = totals.requests() + totals.dropped();
    assert_eq!(sent, 50_000, "every arrival of the schedule is accounted for");
    let achieved = totals.requests() as f64 / 10.0;
    assert!((achieved - 5000.0).abs() / 5000.0 <= 0.01, "achieved {achieved}/s, dropped {}", totals.dropped());
    assert_eq!(totals.errors(), 0, "{:?}", totals.errors_by_kind);
    // What pacing adds of its own (about 0.1 ms on an idle 2-core machine; an async timer would
    // add up to 1 ms). Reported, not asserted: it is a speed, and CPU contention moves it.
    let pacing = ms(&totals.latency(), 0.5) - ms(&totals.service(), 0.5);
    eprintln!("corrected p50 exceeds service-time p50 by {pacing:.3} ms");
    assert!(ms(&totals.latency(), 0.5) >= ms(&totals.service(), 0.5), "latency counts from before the send");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stall_shows_in_corrected_latency_and_not_in_service_time() {
    let url = rest_server(SlowEndpoint::new(Duration::from_millis(1), Stall::at(1000, Duration::from_secs(1)))).await;
    // Four users and a generous lateness: arrivals queue behind the stall instead of dropping,
    // as they would behind a real client's blocked connections.
    let totals =
        run(constant(200.0, 10, 4), OperationKind::GetChallenges, workload(vec![]), Some(url), Duration::from_secs(30))
            .await;
    assert_eq!(totals.requests(), 2000);
    assert_eq!(totals.dropped(), 0);
    let (corrected_p99, service_p99) = (ms(&totals.latency(), 0.99), ms(&totals.service(), 0.99));
    let (corrected_p95, service_max) = (ms(&totals.latency(), 0.95), totals.service().max() as f64 / 1000.0);
    assert!(corrected_p99 >= 800.0, "the stall is in the corrected p99: {corrected_p99} ms");
    assert!(corrected_p95 >= 400.0, "and in the corrected p95: {corrected_p95} ms");
    assert!(service_p99 < 100.0, "but not in the service-time p99: {service_p99} ms");
    assert!(service_max >= 900.0, "the stalled requests themselves took the stall: {service_max} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrivals_beyond_a_small_pool_are_counted_as_dropped() {
    let channel = grpc_server(Duration::from_millis(50)).await;
    // 10 users at 50 ms serve at most 200/s of the 1,000/s offered.
    let totals =
        run(constant(1000.0, 5, 10), OperationKind::Stat, workload(vec![channel]), None, Duration::from_millis(50))
            .await;
    assert_eq!(totals.requests() + totals.dropped(), 5000, "every arrival is either sent or dropped");
    let achieved = totals.requests() as f64 / 5.0;
    assert!((150.0..=210.0).contains(&achieved), "the pool's capacity is about 200/s: {achieved}");
    assert!(totals.dropped() >= 3900, "the rest is dropped, not silently delayed: {}", totals.dropped());
    assert!(ms(&totals.latency(), 0.99) < 150.0, "what was sent started within the lateness limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constant_vus_loop_as_fast_as_the_server_answers() {
    let channel = grpc_server(Duration::from_millis(10)).await;
    let executor = Executor::ConstantVus { vus: 4, duration: Duration::from_secs(3) };
    let totals = run(executor, OperationKind::Stat, workload(vec![channel]), None, Duration::from_millis(50)).await;
    // Four users, 10 ms per call, 3 s: about 1,200 calls; a closed model never drops.
    assert!((900..=1250).contains(&totals.requests()), "{} calls", totals.requests());
    assert_eq!(totals.dropped(), 0);
    let (latency, service) = (ms(&totals.latency(), 0.99), ms(&totals.service(), 0.99));
    assert!((latency - service).abs() < 1.0, "closed model: latency {latency} = service time {service}");
}
