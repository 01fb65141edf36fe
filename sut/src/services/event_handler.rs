//! The event handler as an application: tonic gRPC (both `OnMessage` services) on one port,
//! `/metrics` on an admin port, and the background flusher.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use prometheus::Registry;
use proto::account::user_authentication_user_logged_in_service_server::{
    UserAuthenticationUserLoggedInService, UserAuthenticationUserLoggedInServiceServer,
};
use proto::statistic::statistic_stat_item_updated_service_server::{
    StatisticStatItemUpdatedService, StatisticStatItemUpdatedServiceServer,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use super::DatabaseFlags;
use super::server::{self, ServerLimits};
use crate::challenges::ChallengeConfig;
use crate::duration::clap_parser as duration;
use crate::events::buffer::EventBuffer;
use crate::events::flusher::{self, FlushMetrics, FlushSettings};
use crate::events::grpc::{EventMetrics, EventService};
use crate::events::store::{PerGoalStore, PerStatStore, ProgressStore, StoreKind};
use crate::metrics::{PoolGauges, admin_router};

/// `event-handler` settings (flags, or the environment variables shown).
#[derive(Debug, Clone, Args)]
pub struct EventHandlerSettings {
    /// The database.
    #[command(flatten)]
    pub database: DatabaseFlags,
    /// Challenge configuration file (JSON, or YAML by extension).
    #[arg(long, env = "CHALLENGES_CONFIG", default_value = "fixtures/challenges.json")]
    pub challenges_config: PathBuf,
    /// Events for other namespaces are acknowledged and skipped.
    #[arg(long, env = "NAMESPACE", default_value = "test")]
    pub namespace: String,
    /// How progress is stored: one row per (user, stat code), or production's row per (user, goal).
    #[arg(long, env = "STORE", value_enum, default_value_t = StoreKind::PerStat)]
    pub store: StoreKind,
    /// Time between buffer flushes.
    #[arg(long, env = "FLUSH_INTERVAL", default_value = "1s", value_parser = duration)]
    pub flush_interval: Duration,
    /// Maximum buffered entries, one per (user, stat code) or per (user, goal) by the store; beyond
    /// it calls wait, then get RESOURCE_EXHAUSTED.
    #[arg(long, env = "BUFFER_LIMIT", default_value_t = 100_000)]
    pub buffer_limit: usize,
    /// How long a call waits for a flush to free buffer space.
    #[arg(long, env = "BUFFER_FULL_WAIT", default_value = "1s", value_parser = duration)]
    pub buffer_full_wait: Duration,
    /// Rows per write statement of a flush.
    #[arg(long, env = "FLUSH_CHUNK_ROWS", default_value_t = 5_000)]
    pub flush_chunk_rows: usize,
    /// After a shutdown signal, how long in-flight calls may take before the connections are
    /// closed (the buffer then refuses events with UNAVAILABLE, and the final flush begins).
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = duration)]
    pub shutdown_grace: Duration,
    /// How long shutdown keeps retrying the final flush.
    #[arg(long, env = "SHUTDOWN_FLUSH_TIMEOUT", default_value = "30s", value_parser = duration)]
    pub shutdown_flush_timeout: Duration,
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// gRPC port (0 picks a free one).
    #[arg(long, env = "GRPC_PORT", default_value_t = 6565)]
    pub grpc_port: u16,
    /// Admin port serving /metrics (0 picks a free one).
    #[arg(long, env = "ADMIN_PORT", default_value_t = 8082)]
    pub admin_port: u16,
    /// For the harness's own tests only: keep a copy of every event received, forever (a
    /// deliberate memory leak, which a soak run must flag).
    #[arg(long, hide = true, env = "GAUNTLET_TEST_LEAK_EVENTS")]
    pub test_leak_events: bool,
}

/// A bound, migrated, ready-to-run event handler.
#[derive(Debug)]
pub struct EventHandler {
    grpc: TcpListener,
    admin: TcpListener,
    admin_router: axum::Router,
    layout: Layout,
    flush: FlushSettings,
    flush_metrics: FlushMetrics,
    shutdown_grace: Duration,
    /// The handler's pool.
    pub pool: sqlx::PgPool,
}

/// The services, buffer and store of the chosen layout.
#[derive(Debug)]
enum Layout {
    PerGoal(Parts<PerGoalStore>),
    PerStat(Parts<PerStatStore>),
}

#[derive(Debug)]
struct Parts<S: ProgressStore> {
    service: EventService<S>,
    buffer: Arc<EventBuffer<S::Update>>,
    store: Arc<S>,
}

impl<S: ProgressStore> Parts<S> {
    fn new(store: S, settings: &EventHandlerSettings, metrics: EventMetrics) -> Self {
        let store = Arc::new(store);
        let buffer = Arc::new(EventBuffer::new(settings.buffer_limit));
        let service =
            EventService::new(store.clone(), buffer.clone(), &settings.namespace, settings.buffer_full_wait, metrics);
        let service = if settings.test_leak_events { service.leaking_every_event() } else { service };
        Self { service, buffer, store }
    }

    /// Serves both `OnMessage` services and runs the flusher until `shutdown`; in-flight calls get
    /// `grace` to finish, then the buffer is closed and flushed.
    async fn serve(
        self,
        grpc: TcpListener,
        flush: FlushSettings,
        flush_metrics: FlushMetrics,
        shutdown: CancellationToken,
        grace: Duration,
    ) -> anyhow::Result<()>
    where
        EventService<S>: UserAuthenticationUserLoggedInService + StatisticStatItemUpdatedService,
    {
        let flusher_stop = CancellationToken::new();
        let flusher = tokio::spawn(flusher::run(
            self.buffer.clone(),
            self.store.clone(),
            flush,
            flush_metrics,
            flusher_stop.clone(),
        ));
        let served = tonic::transport::Server::builder()
            .max_concurrent_streams(Some(4096))
            .add_service(UserAuthenticationUserLoggedInServiceServer::new(self.service.clone()))
            .add_service(StatisticStatItemUpdatedServiceServer::new(self.service))
            .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), shutdown.clone().cancelled_owned());
        let grace_over = async {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        let served = tokio::select! {
            served = served => served,
            () = grace_over => {
                tracing::warn!(?grace, "gRPC connections still open after the shutdown grace; closing");
                Ok(())
            }
        };
        // No call can add to the buffer any more (a connection outliving the grace is refused
        // with UNAVAILABLE): flush it all.
        self.buffer.close();
        flusher_stop.cancel();
        flusher.await.context("flusher task")?;
        served.context("gRPC server")
    }
}

impl EventHandler {
    /// Connects, migrates and binds both ports, serving `config` (see
    /// [`load_config`](super::load_config)).
    pub async fn build(settings: &EventHandlerSettings, config: Arc<ChallengeConfig>) -> anyhow::Result<Self> {
        let pool = settings.database.migrated_pool("event-handler").await?;
        let registry = Registry::new();
        let metrics = EventMetrics::register(&registry);
        let layout = match settings.store {
            StoreKind::PerGoal => {
                Layout::PerGoal(Parts::new(PerGoalStore::new(pool.clone(), config), settings, metrics))
            }
            StoreKind::PerStat => {
                Layout::PerStat(Parts::new(PerStatStore::new(pool.clone(), config), settings, metrics))
            }
        };
        let flush_metrics = FlushMetrics::register(&registry);
        // The limit beside the size, so a reader of /metrics sees how full the buffer is.
        crate::metrics::register(
            &registry,
            prometheus::IntGauge::new("event_buffer_limit", "Buffer limit in entries (--buffer-limit)")?,
        )
        .set(i64::try_from(settings.buffer_limit).unwrap_or(i64::MAX));
        let admin_router = admin_router(registry.clone(), Some(PoolGauges::register(&registry, pool.clone())));
        let grpc = super::bind(&settings.host, settings.grpc_port, "gRPC").await?;
        let admin = super::bind(&settings.host, settings.admin_port, "admin").await?;
        Ok(Self {
            grpc,
            admin,
            admin_router,
            layout,
            flush: FlushSettings {
                interval: settings.flush_interval,
                chunk_rows: settings.flush_chunk_rows,
                shutdown_timeout: settings.shutdown_flush_timeout,
            },
            flush_metrics,
            shutdown_grace: settings.shutdown_grace,
            pool,
        })
    }

    /// The gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        super::local_addr(&self.grpc)
    }

    /// The admin (metrics) address.
    pub fn admin_addr(&self) -> SocketAddr {
        super::local_addr(&self.admin)
    }

    /// Serves until `shutdown` fires: then stops accepting calls, lets in-flight calls finish,
    /// and flushes the whole buffer before returning.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        super::announce_ready("event-handler", &[("grpc", self.grpc_addr()), ("admin", self.admin_addr())]);
        let limits = ServerLimits { shutdown_grace: self.shutdown_grace, ..ServerLimits::default() };
        let admin = tokio::spawn(server::serve(self.admin, self.admin_router, shutdown.clone(), limits));
        let (flush, metrics, grace) = (self.flush, self.flush_metrics, self.shutdown_grace);
        let grpc = match self.layout {
            Layout::PerGoal(parts) => parts.serve(self.grpc, flush, metrics, shutdown, grace).await,
            Layout::PerStat(parts) => parts.serve(self.grpc, flush, metrics, shutdown, grace).await,
        };
        let admin = admin.await.context("admin task")?;
        self.pool.close().await;
        grpc?;
        admin.context("admin server")?;
        Ok(())
    }
}
