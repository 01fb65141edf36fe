//! The challenge service as an application: REST on one port, `/metrics` on an admin port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::DatabaseFlags;
use super::server::{self, ServerLimits};
use crate::api::view::ViewTemplate;
use crate::api::{self, AppState};
use crate::auth::Authenticator;
use crate::challenges::ChallengeConfig;
use crate::duration::clap_parser as duration;
use crate::events::store::{Store, StoreKind};
use crate::metrics::{PoolGauges, admin_router};
use crate::reward::{RetryPolicy, RewardClient};

/// How callers authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// HS256 JWTs signed with `--jwt-secret` (production behaviour).
    Jwt,
    /// No auth: `X-Mock-User-Id` names the user (load tests only).
    Mock,
}

/// `challenge-service` settings (flags, or the environment variables shown).
#[derive(Debug, Clone, Args)]
pub struct ChallengeServiceSettings {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseFlags,
    /// Challenge configuration file (JSON, or YAML by extension).
    #[arg(long, env = "CHALLENGES_CONFIG", default_value = "fixtures/challenges.json")]
    pub challenges_config: PathBuf,
    /// Path prefix of every route.
    #[arg(long, env = "BASE_PATH", default_value = "/challenge")]
    pub base_path: String,
    /// Authentication mode.
    #[arg(long, env = "AUTH_MODE", value_enum, default_value = "jwt")]
    pub auth_mode: AuthMode,
    /// HS256 shared secret (required with --auth-mode jwt).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// How progress is stored: must match the event handler's --store.
    #[arg(long, env = "STORE", value_enum, default_value_t = StoreKind::PerStat)]
    pub store: StoreKind,
    /// The namespace this deployment serves; tokens must carry it.
    #[arg(long, env = "NAMESPACE", default_value = "test")]
    pub namespace: String,
    /// Base URL of the reward platform (or the reward mock).
    #[arg(long, env = "REWARD_PLATFORM_URL", default_value = "http://127.0.0.1:8090")]
    pub reward_platform_url: String,
    /// Time budget of one claim's reward grant, retries included.
    #[arg(long, env = "CLAIM_BUDGET", default_value = "5s", value_parser = duration)]
    pub claim_budget: Duration,
    /// Retries of a failed reward grant.
    #[arg(long, env = "REWARD_RETRIES", default_value_t = 3)]
    pub reward_retries: u32,
    /// First backoff between grant retries (doubles each time).
    #[arg(long, env = "REWARD_BACKOFF", default_value = "500ms", value_parser = duration)]
    pub reward_backoff: Duration,
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// REST port (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Admin port serving /metrics (0 picks a free one).
    #[arg(long, env = "ADMIN_PORT", default_value_t = 8081)]
    pub admin_port: u16,
    /// Timeouts, the connection cap and the shutdown grace of the REST port.
    #[command(flatten)]
    pub limits: ServerLimits,
}

/// A bound, migrated, ready-to-run challenge service.
#[derive(Debug)]
pub struct ChallengeService {
    rest: TcpListener,
    admin: TcpListener,
    rest_router: axum::Router,
    admin_router: axum::Router,
    limits: ServerLimits,
    /// The service's pool (tests inspect it).
    pub pool: sqlx::PgPool,
}

impl ChallengeService {
    /// Connects, migrates and binds both ports, serving `config` (see
    /// [`load_config`](super::load_config)).
    pub async fn build(settings: &ChallengeServiceSettings, config: Arc<ChallengeConfig>) -> anyhow::Result<Self> {
        let auth = match settings.auth_mode {
            AuthMode::Jwt => {
                let secret = settings.jwt_secret.as_deref().filter(|s| !s.is_empty()).context(
                    "--auth-mode jwt needs --jwt-secret (or JWT_SECRET); use --auth-mode mock to disable auth",
                )?;
                Authenticator::jwt(secret.as_bytes(), &settings.namespace)
            }
            AuthMode::Mock => Authenticator::Mock { namespace: settings.namespace.clone() },
        };
        if let Some(warning) = crate::auth::exposure_warning(settings.auth_mode == AuthMode::Mock, &settings.host) {
            tracing::warn!("{warning}");
        }
        if settings.limits.request_timeout <= settings.claim_budget {
            anyhow::bail!(
                "--request-timeout ({:?}) must be longer than --claim-budget ({:?}), or every slow claim times out",
                settings.limits.request_timeout,
                settings.claim_budget
            );
        }
        let pool = settings.database.migrated_pool("challenge-service").await?;

        let registry = Registry::new();
        let state = AppState {
            store: Store::new(settings.store, pool.clone(), config.clone()),
            view: Arc::new(ViewTemplate::new(&config)),
            config,
            pool: pool.clone(),
            auth,
            rewards: RewardClient::new(
                &settings.reward_platform_url,
                RetryPolicy { max_retries: settings.reward_retries, initial_backoff: settings.reward_backoff },
            )?,
            claim_budget: settings.claim_budget,
            health_timeout: settings.database.db_acquire_timeout,
        };
        let rest_router = api::router(state, &settings.base_path, &registry, settings.limits.request_timeout);
        let admin_router = admin_router(registry.clone(), Some(PoolGauges::register(&registry, pool.clone())));
        let rest = super::bind(&settings.host, settings.port, "REST").await?;
        let admin = super::bind(&settings.host, settings.admin_port, "admin").await?;
        Ok(Self { rest, admin, rest_router, admin_router, limits: settings.limits, pool })
    }

    /// The REST address.
    pub fn rest_addr(&self) -> SocketAddr {
        super::local_addr(&self.rest)
    }

    /// The admin (metrics) address.
    pub fn admin_addr(&self) -> SocketAddr {
        super::local_addr(&self.admin)
    }

    /// Serves both ports until `shutdown` fires.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        super::announce_ready("challenge-service", &[("rest", self.rest_addr()), ("admin", self.admin_addr())]);
        let admin_limits = ServerLimits { shutdown_grace: self.limits.shutdown_grace, ..ServerLimits::default() };
        let admin = server::serve(self.admin, self.admin_router, shutdown.clone(), admin_limits);
        let rest = server::serve(self.rest, self.rest_router, shutdown, self.limits);
        let (rest, admin) = tokio::join!(rest, admin);
        self.pool.close().await;
        rest.and(admin)
    }
}
