//! The generator's own cost per request, watched from now on:
//! - `arrival → user → record`: an arrival released by the schedule's dispatcher, taken by one
//!   of 8 users (tasks on one thread, as loadgen pinned to a core runs them), and its result
//!   recorded into the HDR histograms — everything the engine adds to a request;
//! - `REST GET through the user's client`: one keep-alive `GET` of a 16-byte body from a server on
//!   loopback in the same process, its body read and checked (the server's cost included);
//! - `recorder.record`: one result into the histograms.
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
use loadgen::target::operations::Operation;
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
        let target =
            RestTarget::new(&format!("http://{address}"), "", &RestAuth::MockHeader, &users, Duration::from_secs(5))
                .await
                .unwrap();
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

criterion_group!(benches, arrival_to_record, rest_get, record);
criterion_main!(benches);
