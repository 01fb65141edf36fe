//! `spawn_app`-style helpers: a fresh database per test, services on port 0 in-process.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};
use sut::challenges::{self, ChallengeConfig, FixtureShape};
use sut::events::store::StoreKind;
use sut::pg_cluster::{ClusterGuard, ClusterOptions, PgCluster};
use sut::reward::{Latency, MockStats};
use sut::services::DatabaseFlags;
use sut::services::challenge::{AuthMode, ChallengeService, ChallengeServiceSettings};
use sut::services::event_handler::{EventHandler, EventHandlerSettings};
use sut::services::reward_mock::{RewardMock, RewardMockSettings};
use sut::services::server::ServerLimits;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "test-secret";
pub const NAMESPACE: &str = "test";

/// The admin URL of the shared test server (a `postgres` database on it).
fn admin_url() -> String {
    static SHARED: OnceLock<String> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            if let Ok(url) = std::env::var("GAUNTLET_TEST_DATABASE_URL") {
                return url;
            }
            let cluster = PgCluster::start(&test_cluster_options()).expect("start a throwaway PostgreSQL cluster");
            let guard: ClusterGuard = cluster.stop_when_process_exits().expect("arrange cluster clean-up");
            guard.url("postgres")
        })
        .clone()
}

pub fn test_cluster_options() -> ClusterOptions {
    ClusterOptions { unsafe_fast: true, ..ClusterOptions::default() }
}

/// Creates an empty database with a unique name on the server of `admin_url`; returns its URL.
pub async fn fresh_database_on(admin_url: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let name = format!(
        "t_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        rand::random::<u32>()
    );
    let mut conn = PgConnection::connect(admin_url).await.expect("connect to the test server");
    sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut conn).await.expect("create database");
    conn.close().await.ok();
    let (base, _) = admin_url.rsplit_once('/').expect("URL with a database");
    format!("{base}/{name}")
}

/// A fresh database on the shared test server.
pub async fn fresh_database() -> String {
    fresh_database_on(&admin_url()).await
}

pub fn reference_config() -> Arc<ChallengeConfig> {
    let text = challenges::generate_challenges(FixtureShape::default()).to_string();
    Arc::new(challenges::parse("reference", &text, false).expect("reference fixture is valid"))
}

/// Options of one challenge-service test app.
pub struct AppOptions {
    pub reward_latency: Latency,
    pub reward_failure_rate: f64,
    pub claim_budget: Duration,
    pub reward_backoff: Duration,
    pub auth_mode: AuthMode,
    pub database_url: Option<String>,
    pub store: StoreKind,
    pub limits: ServerLimits,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            reward_latency: Latency::Fixed(Duration::from_millis(5)),
            reward_failure_rate: 0.0,
            claim_budget: Duration::from_secs(5),
            reward_backoff: Duration::from_millis(20),
            auth_mode: AuthMode::Jwt,
            database_url: None,
            store: StoreKind::default(),
            limits: ServerLimits::default(),
        }
    }
}

/// A running challenge service with its own reward mock and database.
pub struct TestApp {
    pub base_url: String,
    /// The reward mock's base URL (its admin endpoints included).
    pub mock_url: String,
    pub pool: PgPool,
    pub mock: Arc<MockStats>,
    pub config: Arc<ChallengeConfig>,
    pub http: reqwest::Client,
    /// The REST address (host:port), for raw sockets.
    pub rest_addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// Signals shutdown; returns when the service has stopped.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        self.task.take().expect("running").await.expect("service task").expect("service stopped cleanly");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn spawn_app(options: AppOptions) -> TestApp {
    let shutdown = CancellationToken::new();
    let mock = RewardMock::build(&RewardMockSettings {
        latency: options.reward_latency,
        failure_rate: options.reward_failure_rate,
        ..RewardMockSettings::default()
    })
    .await
    .expect("reward mock");
    let mock_addr = mock.addr();
    let mock_stats = mock.stats.clone();
    tokio::spawn(mock.run(shutdown.clone()));

    let database_url = match options.database_url {
        Some(url) => url,
        None => fresh_database().await,
    };
    let config = reference_config();
    let settings = ChallengeServiceSettings {
        database: DatabaseFlags {
            database_url: database_url.clone(),
            pool_size: 50,
            db_acquire_timeout: Duration::from_secs(2),
            db_startup_wait: Duration::from_secs(10),
        },
        challenges_config: "unused".into(),
        base_path: "/challenge".into(),
        auth_mode: options.auth_mode,
        store: options.store,
        jwt_secret: Some(SECRET.into()),
        namespace: NAMESPACE.into(),
        reward_platform_url: format!("http://{mock_addr}"),
        claim_budget: options.claim_budget,
        reward_retries: 3,
        reward_backoff: options.reward_backoff,
        host: "127.0.0.1".into(),
        port: 0,
        admin_port: 0,
        limits: options.limits,
    };
    let service = ChallengeService::build(&settings, config.clone()).await.expect("challenge service");
    let rest_addr = service.rest_addr();
    let base_url = format!("http://{rest_addr}/challenge");
    let task = Some(tokio::spawn(service.run(shutdown.clone())));
    let pool = PgPool::connect(&database_url).await.expect("test pool");
    TestApp {
        base_url,
        mock_url: format!("http://{mock_addr}"),
        pool,
        mock: mock_stats,
        config,
        http: reqwest::Client::new(),
        rest_addr,
        shutdown,
        task,
    }
}

/// A token for `user` in the test namespace.
pub fn token(user: &str) -> String {
    sut::auth::mint_token(SECRET.as_bytes(), user, NAMESPACE, Duration::from_secs(3600))
}

impl TestApp {
    pub async fn get_challenges(&self, user: &str) -> reqwest::Response {
        self.http.get(format!("{}/v1/challenges", self.base_url)).bearer_auth(token(user)).send().await.expect("GET")
    }

    pub async fn claim(&self, user: &str, challenge: &str, goal: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/challenges/{challenge}/goals/{goal}/claim", self.base_url))
            .bearer_auth(token(user))
            .send()
            .await
            .expect("POST claim")
    }

    /// Stores a progress row directly (as the event handler would have).
    pub async fn put_row(&self, user: &str, goal_id: &str, progress: i32, status: &str) {
        let goal = self.config.goal(goal_id).expect("configured goal");
        sqlx::query(
            "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, status, completed_at, claimed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, \
                     CASE WHEN $6 IN ('completed', 'claimed') THEN (now() AT TIME ZONE 'utc') END, \
                     CASE WHEN $6 = 'claimed' THEN (now() AT TIME ZONE 'utc') END)",
        )
        .bind(user)
        .bind(goal_id)
        .bind(&goal.challenge_id)
        .bind(NAMESPACE)
        .bind(progress)
        .bind(status)
        .execute(&self.pool)
        .await
        .expect("insert progress row");
    }

    pub async fn status_of(&self, user: &str, goal_id: &str) -> Option<String> {
        sqlx::query_scalar("SELECT status FROM user_goal_progress WHERE user_id = $1 AND goal_id = $2")
            .bind(user)
            .bind(goal_id)
            .fetch_optional(&self.pool)
            .await
            .expect("read status")
    }
}

/// Settings for an event handler on port 0 with the `store` layout.
pub fn handler_settings(database_url: &str, store: StoreKind) -> EventHandlerSettings {
    EventHandlerSettings {
        database: DatabaseFlags {
            database_url: database_url.into(),
            pool_size: 10,
            db_acquire_timeout: Duration::from_secs(2),
            db_startup_wait: Duration::from_secs(10),
        },
        challenges_config: "unused".into(),
        namespace: NAMESPACE.into(),
        store,
        flush_interval: Duration::from_millis(50),
        buffer_limit: 100_000,
        buffer_full_wait: Duration::from_secs(1),
        flush_chunk_rows: 5_000,
        shutdown_grace: Duration::from_secs(10),
        shutdown_flush_timeout: Duration::from_secs(30),
        host: "127.0.0.1".into(),
        grpc_port: 0,
        admin_port: 0,
        test_leak_events: false,
    }
}

/// A running event handler; `stop` shuts it down gracefully and waits for the final flush.
pub struct TestHandler {
    pub grpc_url: String,
    pub admin_url: String,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestHandler {
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        self.task.take().expect("running").await.expect("handler task").expect("handler shut down cleanly");
    }
}

impl Drop for TestHandler {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn spawn_handler(settings: &EventHandlerSettings, config: Arc<ChallengeConfig>) -> TestHandler {
    let handler = EventHandler::build(settings, config).await.expect("event handler");
    let grpc_url = format!("http://{}", handler.grpc_addr());
    let admin_url = format!("http://{}", handler.admin_addr());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(handler.run(shutdown.clone()));
    TestHandler { grpc_url, admin_url, shutdown, task: Some(task) }
}
