//! The reward platform mock as a service: one HTTP port serving the platform endpoints,
//! `/healthz` and `/metrics`.

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
}

impl Default for RewardMockSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 0,
            latency: Latency::Fixed(Duration::ZERO),
            failure_rate: 0.0,
            failure_status: 503,
        }
    }
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
        if !(0.0..=1.0).contains(&settings.failure_rate) {
            anyhow::bail!("--failure-rate must be between 0 and 1, got {}", settings.failure_rate);
        }
        let listener = super::bind(&settings.host, settings.port, "HTTP").await?;
        let registry = Registry::new();
        let (router, stats) = mock::router(
            MockSettings {
                latency: settings.latency,
                failure_rate: settings.failure_rate,
                failure_status: settings.failure_status,
            },
            &registry,
        );
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
        super::serve_http(self.listener, self.router, shutdown).await
    }
}
