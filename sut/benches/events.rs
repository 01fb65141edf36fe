//! The event handler's two costs:
//! - one `OnMessage` in-process (validation, per-goal updates, buffering), login and stat;
//! - a flush: rows/s of the store's batched write for 1,000- and 100,000-row batches, against a
//!   throwaway PostgreSQL cluster with durable settings (fsync on).
//!
//! Run with: `cargo bench -p sut --bench events`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use proto::account::UserLoggedIn;
use proto::account::user_authentication_user_logged_in_service_server::UserAuthenticationUserLoggedInService;
use proto::statistic::statistic_stat_item_updated_service_server::StatisticStatItemUpdatedService;
use proto::statistic::{StatItem, StatItemUpdated};
use sut::challenges::{FixtureShape, generate_challenges, parse};
use sut::events::buffer::{Entry, EventBuffer};
use sut::events::grpc::{EventMetrics, EventService};
use sut::events::store::{PgProgressStore, ProgressStore};
use sut::events::update;
use sut::pg::{ClusterOptions, PgCluster};

fn on_message(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let config =
        Arc::new(parse("reference", &generate_challenges(FixtureShape::default()).to_string(), false).unwrap());
    let buffer = Arc::new(EventBuffer::new(usize::MAX));
    let service = EventService::new(
        config,
        buffer.clone(),
        "test",
        Duration::from_secs(1),
        EventMetrics::register(&prometheus::Registry::new()),
    );
    let mut group = c.benchmark_group("OnMessage in-process");
    group.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    group.bench_function("stat event (100 goals)", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let event = StatItemUpdated {
                user_id: format!("user-{:06}", n % 10_000),
                namespace: "test".into(),
                payload: Some(StatItem {
                    stat_code: ["enemy_kills", "games_played", "headshots", "wins"][(n % 4) as usize].into(),
                    latest_value: (n % 1000) as f64,
                    ..Default::default()
                }),
                ..Default::default()
            };
            let service = &service;
            async move { StatisticStatItemUpdatedService::on_message(service, tonic::Request::new(event)).await.unwrap() }
        })
    });
    group.bench_function("login event (100 goals)", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let event = UserLoggedIn {
                user_id: format!("user-{:06}", n % 10_000),
                namespace: "test".into(),
                ..Default::default()
            };
            let service = &service;
            async move {
                UserAuthenticationUserLoggedInService::on_message(service, tonic::Request::new(event)).await.unwrap()
            }
        })
    });
    group.finish();
    // Keep the buffer bounded across benchmark runs.
    let _ = buffer.take();
    buffer.set_in_flight(0);
}

/// `rows` distinct (user, goal) entries from stat events of `rows / 100` users.
fn batch(config: &Arc<sut::challenges::ChallengeConfig>, rows: usize) -> Vec<Entry> {
    let buffer = EventBuffer::new(usize::MAX);
    let now = chrono::Utc::now().naive_utc();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        for u in 0..rows.div_ceil(100) {
            let user: Arc<str> = format!("user-{u:06}").into();
            let values = update::StatValues { latest_value: (u % 1000) as f64, inc: 0.0 };
            let updates = update::for_stat(config, ["enemy_kills", "wins"][u % 2], values, now);
            buffer.record(&user, &"test".into(), updates, now, Duration::ZERO).await.unwrap();
        }
    });
    let mut entries = buffer.take();
    entries.truncate(rows);
    entries
}

fn flush(c: &mut Criterion) {
    let cluster = match PgCluster::start(&ClusterOptions::default()) {
        Ok(cluster) => cluster,
        Err(e) => {
            eprintln!("skipping the flush benchmark: {e}");
            return;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let pool = rt.block_on(async {
        let pool = sqlx::PgPool::connect(&cluster.url("postgres")).await.unwrap();
        sut::db::MIGRATOR.run(&pool).await.unwrap();
        pool
    });
    let store = PgProgressStore::new(pool);
    let config =
        Arc::new(parse("reference", &generate_challenges(FixtureShape::default()).to_string(), false).unwrap());
    let mut group = c.benchmark_group("flush (MERGE of a coalesced batch)");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    for rows in [1_000, 100_000] {
        let entries = batch(&config, rows);
        group.throughput(Throughput::Elements(rows as u64));
        // The first write inserts the rows; the measured writes update them, as steady state does.
        rt.block_on(store.apply(&entries)).unwrap();
        group.bench_function(format!("{rows} rows"), |b| {
            b.iter_custom(|iterations| {
                let started = Instant::now();
                for _ in 0..iterations {
                    rt.block_on(store.apply(&entries)).unwrap();
                }
                started.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, on_message, flush);
criterion_main!(benches);
