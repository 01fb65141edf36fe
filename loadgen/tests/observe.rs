//! The samplers against the real things: a process that burns a core, and a real PostgreSQL
//! (with `pg_stat_statements` preloaded) under real concurrent load.
//!
//! Run with: `cargo test -p loadgen --test observe`

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use loadgen::observe::postgres::PgSampler;
use loadgen::observe::resources::{ProcessSampler, ProcessTarget};
use sut::pg_cluster::{ClusterOptions, PgCluster};

/// Kills the child when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_process_burning_one_core_for_a_second_reads_near_100_percent() {
    let burner = Reaped(Command::new("sh").args(["-c", "while :; do :; done"]).spawn().expect("spawn sh"));
    let mut sampler =
        ProcessSampler::new(vec![ProcessTarget { name: "burner".into(), pid: burner.0.id(), with_children: false }]);
    let first = sampler.sample_now();
    let burner_first = first.iter().find(|s| s.component == "burner").expect("the burner is sampled");
    assert_eq!(burner_first.cpu_percent, None, "no interval yet on the first sample");
    assert!(burner_first.memory_bytes.unwrap() > 0);
    assert_eq!(burner_first.threads, Some(1));
    let at_once = sampler.sample_now();
    let burner_at_once = at_once.iter().find(|s| s.component == "burner").expect("sampled");
    assert_eq!(burner_at_once.cpu_percent, None, "no rate over a window of a few microseconds");

    // The measurement window itself: CPU is a rate over wall time.
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = sampler.sample_now();
    let cpu = second.iter().find(|s| s.component == "burner").and_then(|s| s.cpu_percent).expect("a CPU figure");
    assert!((75.0..=105.0).contains(&cpu), "one busy core should read near 100%, got {cpu:.1}%");
    let machine = second.iter().find(|s| s.component == "machine").and_then(|s| s.cpu_percent).expect("machine CPU");
    assert!(machine >= cpu * 0.75, "the machine is at least as busy as the burner: {machine:.1}% vs {cpu:.1}%");
}

#[test]
fn a_postgres_tree_counts_its_backends() {
    let cluster =
        PgCluster::start(&ClusterOptions { unsafe_fast: true, ..ClusterOptions::default() }).expect("cluster");
    let pid: u32 = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid"))
        .expect("postmaster.pid")
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("a pid");
    let mut tree = ProcessSampler::new(vec![ProcessTarget { name: "postgres".into(), pid, with_children: true }]);
    let mut alone = ProcessSampler::new(vec![ProcessTarget { name: "postgres".into(), pid, with_children: false }]);
    let threads = |s: &mut ProcessSampler| {
        s.sample_now().into_iter().find(|s| s.component == "postgres").and_then(|s| s.threads).expect("threads")
    };
    // The checkpointer, writer, WAL writer, autovacuum launcher… are the postmaster's children.
    assert!(threads(&mut tree) > threads(&mut alone) + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_sampler_sees_connections_statement_deltas_and_plans_under_load() {
    let cluster = tokio::task::spawn_blocking(|| {
        PgCluster::start(&ClusterOptions {
            unsafe_fast: true,
            preload: vec!["pg_stat_statements".into()],
            ..ClusterOptions::default()
        })
    })
    .await
    .unwrap()
    .expect("a cluster with pg_stat_statements");
    let url = cluster.url("postgres");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect_with(url.parse::<sqlx::postgres::PgConnectOptions>().unwrap().application_name("challenge-service"))
        .await
        .expect("pool");
    sut::db::MIGRATOR.run(&pool).await.expect("migrations");
    sqlx::query(
        "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, status) \
         SELECT 'user-' || u, 'goal-' || g, 'challenge-1', 'test', 1, 'in_progress' \
         FROM generate_series(1, 200) u, generate_series(1, 20) g",
    )
    .execute(&pool)
    .await
    .expect("rows");

    let mut sampler = PgSampler::connect(&url, true).await.expect("sampler");
    let baseline = sampler.sample(0).await;
    assert!(baseline.iter().any(|o| o.metric == "sampler_up" && o.value == 1.0));

    // Real load: 8 connections reading users' progress concurrently.
    let reads = (0..800).map(|i| {
        let pool = pool.clone();
        async move { sut::db::user_progress(&pool, &format!("user-{}", i % 200 + 1)).await.map(|rows| rows.len()) }
    });
    let counts = futures::future::try_join_all(reads).await.expect("reads");
    assert!(counts.iter().all(|n| *n == 20));

    let rows = sampler.sample(1).await;
    let value = |metric: &str| rows.iter().find(|o| o.metric == metric).map(|o| o.value);
    assert!(value("connections{app=challenge-service}").unwrap_or(0.0) >= 1.0, "{rows:?}");
    assert!(value("connections_total").unwrap_or(0.0) >= 1.0);
    assert!(value("commits_per_s").is_some());
    // Row counts arrive with the backends' statistics flushes (up to seconds late); the table is there.
    assert!(value("table_size_bytes").unwrap_or(0.0) > 0.0, "{rows:?}");

    let end = sampler.finish().await;
    assert!(end.unavailable.is_empty(), "{:?}", end.unavailable);
    let read = end
        .top_statements
        .iter()
        .find(|s| s.query.contains("FROM user_goal_progress WHERE user_id = $1"))
        .unwrap_or_else(|| panic!("the progress read among the top statements: {:?}", end.top_statements));
    assert_eq!(read.calls, 800, "the delta counts exactly the run's calls");
    assert_eq!(read.rows, 800 * 20);
    assert!(read.mean_ms > 0.0 && read.max_ms >= read.mean_ms);
    assert!(
        end.top_statements.iter().all(|s| !s.query.contains("pg_stat_activity")),
        "the sampler's own queries are left out"
    );

    let names: Vec<&str> = end.explain.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["progress read", "claim update", "flush upsert (20 rows)"]);
    for plan in &end.explain {
        assert!(plan.plan.contains("actual time"), "{}: {}", plan.name, plan.plan);
        assert!(plan.plan.contains("Buffers"), "{}: {}", plan.name, plan.plan);
    }
    // EXPLAIN ANALYZE ran the claim update and the upsert, but rolled them back.
    let changed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM user_goal_progress WHERE progress <> 1 OR status <> 'in_progress'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(changed, 0);
    pool.close().await;
    tokio::task::spawn_blocking(move || drop(cluster)).await.unwrap();
}
