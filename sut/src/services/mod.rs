//! The three SUT services as buildable applications: each `build` binds its listeners (port 0
//! allowed, the real port reported) and prepares its state; `run` serves until the shutdown
//! token fires. The binaries in `src/bin` only parse settings and call these, so tests start the
//! very same services in-process with their own ports and shutdown.

pub mod challenge;
pub mod event_handler;
pub mod reward_mock;
pub mod server;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::db::{self, DbSettings};

/// The database flags every service takes, the same for each (`--database-url`, `--pool-size`,
/// `--db-acquire-timeout`, `--db-startup-wait`).
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseFlags {
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Database pool size.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 50)]
    pub pool_size: u32,
    /// How long a request or a write waits for a database connection.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT", default_value = "2s", value_parser = crate::duration::clap_parser)]
    pub db_acquire_timeout: Duration,
    /// How long start-up waits for the database to apply migrations.
    #[arg(long, env = "DB_STARTUP_WAIT", default_value = "30s", value_parser = crate::duration::clap_parser)]
    pub db_startup_wait: Duration,
}

impl DatabaseFlags {
    /// The service's pool on this database, migrated; `name` is its `application_name`.
    pub async fn migrated_pool(&self, name: &str) -> anyhow::Result<PgPool> {
        let db = DbSettings {
            url: self.database_url.clone(),
            pool_size: self.pool_size,
            acquire_timeout: self.db_acquire_timeout,
            application_name: name.into(),
        };
        migrated_pool(&db, self.db_startup_wait).await
    }
}

/// The challenge configuration at `path`, loaded and checked, for a service's `build`.
pub fn load_config(path: &std::path::Path) -> anyhow::Result<std::sync::Arc<crate::challenges::ChallengeConfig>> {
    Ok(std::sync::Arc::new(crate::challenges::load(path)?))
}

/// Binds `host:port` (port 0 picks a free one); `what` names the port in errors.
pub async fn bind(host: &str, port: u16, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind((host, port)).await.with_context(|| format!("binding the {what} port {host}:{port}"))
}

/// A lazily connecting pool with the schema migrated (waiting up to `startup_wait` for the
/// database to come up).
pub async fn migrated_pool(settings: &DbSettings, startup_wait: Duration) -> anyhow::Result<PgPool> {
    let pool = db::lazy_pool(settings).context("invalid --database-url")?;
    db::migrate(&pool, startup_wait).await.context("applying database migrations")?;
    Ok(pool)
}

/// The address a listener really bound.
pub fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener.local_addr().expect("a bound listener has an address")
}

pub use server::ServerLimits;

/// Prints the line the harness waits for: `READY name key=addr …`, on stdout.
pub fn announce_ready(name: &str, addrs: &[(&str, SocketAddr)]) {
    let parts: Vec<String> = addrs.iter().map(|(k, a)| format!("{k}={a}")).collect();
    println!("READY {name} {}", parts.join(" "));
    tracing::info!(service = name, addresses = %parts.join(" "), "ready");
}
