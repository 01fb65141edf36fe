//! The reward platform mock as a service: one HTTP port serving the platform endpoints,
//! `/admin/settings` (read and change latency and failures while it runs), `/admin/grants` (the
//! grant ledger), `/healthz` and `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::reward::mock::{self, Latency, MockSettings, MockStats};

/// `reward-mock` settings (flags, or the environment variables shown).
#[derive(Debug, Clone, Args)]
pub struct RewardMockSettings {
    /// Address to listen on.
    #[arg(long, env = "REWARD_MOCK_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "REWARD_MOCK_PORT", default_value_t = 8090)]
    pub port: u16,
    /// Injected latency: `150ms`, `fixed:150ms` or `uniform:50ms..200ms`.
    #[arg(long, env = "REWARD_MOCK_LATENCY", default_value = "uniform:50ms..200ms")]
    pub latency: Latency,
    /// Fraction of requests that fail (0.0–1.0).
    #[arg(long, env = "REWARD_MOCK_FAILURE_RATE", default_value_t = 0.0)]
    pub failure_rate: f64,
    /// HTTP status of an injected failure.
    #[arg(long, env = "REWARD_MOCK_FAILURE_STATUS", default_value_t = 503)]
    pub failure_status: u16,
    /// Share of injected failures that strike after the grant was applied (0.0–1.0): the reward
    /// is granted but the caller sees the error, as when a reply is lost.
    #[arg(long, env = "REWARD_MOCK_FAILURE_AFTER_GRANT", default_value_t = 0.0)]
    pub failure_after_grant: f64,
}

impl Default for RewardMockSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 0,
            latency: Latency::Fixed(Duration::ZERO),
            failure_rate: 0.0,
            failure_status: 503,
            failure_after_grant: 0.0,
        }
    }
}

/// `failureRate must …` → `failure-rate must …`.
fn kebab(problem: &str) -> String {
    let (field, rest) = problem.split_once(' ').unwrap_or((problem, ""));
    let mut out = String::new();
    for c in field.chars() {
        if c.is_ascii_uppercase() {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    format!("{out} {rest}")
}

/// A bound, ready-to-run reward mock.
#[derive(Debug)]
pub struct RewardMock {
    listener: TcpListener,
    router: axum::Router,
    /// Request counters, readable in-process.
    pub stats: Arc<MockStats>,
}

impl RewardMock {
    /// Binds the port and builds the routes.
    pub async fn build(settings: &RewardMockSettings) -> anyhow::Result<Self> {
        let mock_settings = MockSettings {
            latency: settings.latency,
            failure_rate: settings.failure_rate,
            failure_status: settings.failure_status,
            failure_after_grant: settings.failure_after_grant,
        };
        // The flags are the fields' kebab-case names.
        mock_settings.validate().map_err(|problem| anyhow::anyhow!("--{}", kebab(&problem)))?;
        let listener = super::bind(&settings.host, settings.port, "HTTP").await?;
        let registry = Registry::new();
        let (router, stats) = mock::router(mock_settings, &registry);
        let router = router.merge(crate::metrics::admin_router(registry, None));
        Ok(Self { listener, router, stats })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        super::local_addr(&self.listener)
    }

    /// Serves until `shutdown` fires.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        super::announce_ready("reward-mock", &[("http", self.addr())]);
        super::server::serve(self.listener, self.router, shutdown, super::ServerLimits::default()).await
    }
}
