//! The event handler's two costs, for both store layouts:
//! - one `OnMessage` in-process (validation, the layout's updates, buffering), login and stat;
//! - a flush: the store's batched, exactly-once write of 1,000- and 100,000-row batches (rows of
//!   the layout: (user, stat code) for per-stat, (user, goal) for per-goal), against a throwaway
//!   PostgreSQL cluster with durable settings (fsync on).
//!
//! Run with: `cargo bench -p sut --bench events`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime};
use proto::account::UserLoggedIn;
use proto::account::user_authentication_user_logged_in_service_server::UserAuthenticationUserLoggedInService;
use proto::statistic::statistic_stat_item_updated_service_server::StatisticStatItemUpdatedService;
use proto::statistic::{StatItem, StatItemUpdated};
use sut::challenges::{ChallengeConfig, FixtureShape, generate_challenges, parse};
use sut::events::buffer::{Entry, EventBuffer};
use sut::events::grpc::{EventMetrics, EventService};
use sut::events::store::{PerGoalStore, PerStatStore, ProgressStore};
use sut::events::update::StatValues;
use sut::pg_cluster::{ClusterOptions, PgCluster};

fn reference() -> Arc<ChallengeConfig> {
    Arc::new(parse("reference", &generate_challenges(FixtureShape::default()).to_string(), false).unwrap())
}

fn on_message_of<S: ProgressStore>(group: &mut BenchmarkGroup<'_, WallTime>, layout: &str, store: S) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let buffer = Arc::new(EventBuffer::new(usize::MAX));
    let service = EventService::new(
        Arc::new(store),
        buffer.clone(),
        "test",
        Duration::from_secs(1),
        EventMetrics::register(&prometheus::Registry::new()),
    );
    let mut n = 0u64;
    group.bench_function(format!("{layout}: stat event"), |b| {
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
    group.bench_function(format!("{layout}: login event"), |b| {
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
    // Keep the buffer bounded across benchmark runs.
    let _ = buffer.take();
    buffer.set_in_flight(0);
}

fn on_message(c: &mut Criterion) {
    // OnMessage never touches the database: a pool that never connects will do (made in a
    // runtime's context, as sqlx requires).
    let setup = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _context = setup.enter();
    let pool = || sqlx::PgPool::connect_lazy("postgres://unused@127.0.0.1:1/unused").unwrap();
    let config = reference();
    let mut group = c.benchmark_group("OnMessage in-process");
    group.throughput(Throughput::Elements(1));
    on_message_of(&mut group, "per-stat", PerStatStore::new(pool(), config.clone()));
    on_message_of(&mut group, "per-goal", PerGoalStore::new(pool(), config));
    group.finish();
}

/// `rows` distinct buffer entries of `store`'s layout from stat events of as many users as needed.
fn batch<S: ProgressStore>(store: &S, rows: usize) -> Vec<Entry<S::Update>> {
    let buffer = EventBuffer::new(usize::MAX);
    let now = chrono::Utc::now().naive_utc();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut u = 0;
        while buffer.len() < rows {
            let user: Arc<str> = format!("user-{u:06}").into();
            let values = StatValues { latest_value: (u % 1000) as f64, inc: 0.0 };
            let updates = store.stat_updates(["enemy_kills", "wins"][u % 2], values, now);
            buffer.record(&user, &"test".into(), updates, now, Duration::ZERO).await.unwrap();
            u += 1;
        }
    });
    let mut entries = buffer.take();
    entries.truncate(rows);
    entries
}

fn flush_of<S: ProgressStore>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Runtime,
    layout: &str,
    store: &S,
) {
    for rows in [1_000, 100_000] {
        let entries = batch(store, rows);
        group.throughput(Throughput::Elements(rows as u64));
        // The first write inserts the rows; the measured writes update them, as steady state does.
        rt.block_on(store.apply(rand::random(), &entries)).unwrap();
        group.bench_function(format!("{layout}: {rows} rows"), |b| {
            b.iter_custom(|iterations| {
                let started = Instant::now();
                for _ in 0..iterations {
                    rt.block_on(store.apply(rand::random(), &entries)).unwrap();
                }
                started.elapsed()
            })
        });
    }
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
    let config = reference();
    let mut group = c.benchmark_group("flush (one exactly-once batch)");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    flush_of(&mut group, &rt, "per-stat", &PerStatStore::new(pool.clone(), config.clone()));
    flush_of(&mut group, &rt, "per-goal", &PerGoalStore::new(pool, config));
    group.finish();
}

criterion_group!(benches, on_message, flush);
criterion_main!(benches);
