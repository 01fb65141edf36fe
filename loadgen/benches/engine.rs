//! The generator's own cost per request, watched from now on:
//! - `arrival → user → record`: an arrival released by the schedule's dispatcher, taken by one
//!   of 8 users (tasks on one thread, as loadgen pinned to a core runs them), and its result
//!   recorded into the HDR histograms — everything the engine adds to a request;
//! - `REST GET through the user's client`: one keep-alive `GET` of a 16-byte body from a server on
//!   loopback in the same process, its body read and checked (the server's cost included);
//! - `recorder.record`: one result into the histograms;
//! - `live: one second of the dashboard`: everything the live record does once a second at
//!   5,000 requests/s (four operations, scenario 3's thresholds standing, the second and a
//!   samplers' round of 150 observations as JSON to a subscriber, `/metrics` rendered).
//!
//! Run with: `cargo bench -p loadgen --bench engine`

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use loadgen::definition::executor::{RateCurve, Stage};
use loadgen::engine::arrivals::{ArrivalSchedule, Dispatch, Take};
use loadgen::engine::http::{Keep, RestAuth, RestClient, RestTarget};
use loadgen::engine::recorder::{Outcome, Recorder};
use loadgen::live::{Live, Round, RunStart, Second};
use loadgen::observe::Observation;
use loadgen::target::operations::Operation;
use loadgen::verdict::live::LiveJudge;
use tokio::time::Instant;

/// Counts each batch as scheduled, as the engine's dispatcher does.
struct Counter(Arc<Recorder>);

impl Dispatch for Counter {
    fn due(&mut self, range: Range<u64>) -> bool {
        self.0.record_scheduled(Operation::Stat, 0, range.end - range.start);
        false
    }
}

fn arrival_to_record(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    c.bench_function("arrival → user → record", |b| {
        b.iter_custom(|arrivals| {
            rt.block_on(async {
                let recorder = Arc::new(Recorder::new());
                // Every arrival is due at once: the cost measured is the hand-over and the record.
                let curve = RateCurve::new(
                    arrivals as f64,
                    &[Stage { target: arrivals as f64, duration: Duration::from_secs(1) }],
                );
                let began = std::time::Instant::now();
                let start = Instant::now() - Duration::from_secs(1);
                let schedule = Arc::new(ArrivalSchedule::start(start, curve, Counter(recorder.clone())));
                let users: Vec<_> = (0..8)
                    .map(|_| {
                        let (schedule, recorder) = (schedule.clone(), recorder.clone());
                        tokio::spawn(async move {
                            while !schedule.finished() {
                                match schedule.take(Duration::from_secs(3600)) {
                                    Take::Arrival(arrival) => {
                                        let sent = Instant::now();
                                        recorder.record(Operation::Stat, 0, arrival.at, sent, sent, Outcome::ok(0));
                                    }
                                    Take::Stale(_) => unreachable!("nothing is late by an hour"),
                                    Take::Nothing => schedule.wait(true).await,
                                }
                            }
                        })
                    })
                    .collect();
                for user in users {
                    user.await.unwrap();
                }
                let elapsed = began.elapsed();
                assert_eq!(recorder.totals()[Operation::Stat as usize].requests(), arrivals);
                elapsed
            })
        })
    });
}

fn rest_get(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut client = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/v1/challenges", axum::routing::get(|| async { "{\"challenges\":[]}" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let users = vec!["user-000001".to_owned()];
        let url = [format!("http://{address}")];
        let target = RestTarget::new(&url, "", &RestAuth::MockHeader, &users, Duration::from_secs(5)).await.unwrap();
        RestClient::new(Arc::new(target))
    });
    c.bench_function("REST GET through the user's client", |b| {
        b.iter_custom(|requests| {
            rt.block_on(async {
                let uri = client.target().challenges().clone();
                let began = std::time::Instant::now();
                for _ in 0..requests {
                    let reply = client.send(hyper::Method::GET, uri.clone(), 0, Keep::Shape).await.unwrap();
                    assert!(reply.status == 200 && reply.shape);
                }
                began.elapsed()
            })
        })
    });
}

fn record(c: &mut Criterion) {
    let recorder = Recorder::new();
    let t0 = Instant::now();
    let mut n = 0u64;
    c.bench_function("recorder.record", |b| {
        b.iter(|| {
            n += 1;
            let done = t0 + Duration::from_micros(100 + n % 5000);
            recorder.record(Operation::GetChallenges, 0, t0, t0, done, Outcome::ok(200));
        })
    });
}

fn live_second(c: &mut Criterion) {
    let recorder = Recorder::new();
    let t0 = Instant::now();
    let operations = [Operation::GetChallenges, Operation::Claim, Operation::Login, Operation::Stat];
    for n in 0..5_000u64 {
        let done = t0 + Duration::from_micros(200 + (n * 7919) % 20_000);
        recorder.record(operations[(n % 4) as usize], (n % 2) as u16, t0, t0, done, Outcome::ok(200));
    }
    let snapshots = recorder.take_intervals();
    let scenario = loadgen::definition::builtin::named("scenario3").unwrap();
    let mut judge = LiveJudge::new(&scenario.thresholds, vec!["api".into(), "events".into()]);
    judge.second(&snapshots, 1.0);
    let targets: std::collections::BTreeMap<String, f64> =
        operations.iter().map(|op| (op.name().to_owned(), 1250.0)).collect();
    let rows: Vec<Observation> = (0..150)
        .map(|i| {
            Observation::new(
                1,
                ["challenge-service", "event-handler", "postgres"][i % 3],
                format!("metric_{i}"),
                i as f64,
            )
        })
        .collect();
    let live = Live::watched();
    let (_, mut subscriber) = live.subscribe();
    let mut t = 0;
    c.bench_function("live: one second of the dashboard", |b| {
        b.iter(|| {
            t += 1;
            if t % 3600 == 0 {
                // An hour's run kept for late browsers, then the next run.
                live.begin_run(&RunStart {
                    scenario: "bench".into(),
                    folder: String::new(),
                    duration_s: 3600.0,
                    targets: targets.clone(),
                    thresholds: Vec::new(),
                });
            }
            let second = Second::from_interval(t, 1.0, &snapshots, &targets, judge.standing());
            live.second(&second, &snapshots);
            live.round(Round::from_observations(t, &rows, None));
            while subscriber.try_recv().is_ok() {}
            live.prometheus_text()
        })
    });
}

criterion_group!(benches, arrival_to_record, rest_get, record, live_second);
criterion_main!(benches);
