//! Prometheus metrics: one registry per service instance (so tests can run many instances in one
//! process), the database pool gauges every service exports, and the admin router serving them.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, IntGauge, Registry, TextEncoder};
use sqlx::PgPool;

/// Registers a metric, panicking only on a programming error (a duplicate name).
pub fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry.register(Box::new(metric.clone())).expect("metric names are unique within a service");
    metric
}

/// `db_pool_connections_{active,idle,max}`, refreshed at every scrape.
#[derive(Debug, Clone)]
pub struct PoolGauges {
    pool: PgPool,
    active: IntGauge,
    idle: IntGauge,
    max: IntGauge,
}

impl PoolGauges {
    /// Registers the gauges for `pool`.
    pub fn register(registry: &Registry, pool: PgPool) -> Self {
        let gauge = |name: &str, help: &str| register(registry, IntGauge::new(name, help).expect("valid metric"));
        Self {
            active: gauge("db_pool_connections_active", "Pooled connections in use"),
            idle: gauge("db_pool_connections_idle", "Pooled connections idle"),
            max: gauge("db_pool_connections_max", "Pool size limit"),
            pool,
        }
    }

    fn refresh(&self) {
        let size = i64::from(self.pool.size());
        let idle = i64::try_from(self.pool.num_idle()).unwrap_or(i64::MAX);
        self.active.set(size - idle);
        self.idle.set(idle);
        self.max.set(i64::from(self.pool.options().get_max_connections()));
    }
}

#[derive(Clone)]
struct AdminState {
    registry: Registry,
    pool_gauges: Option<PoolGauges>,
}

/// The admin port's router: `GET /metrics` in the Prometheus text format, and the CPU profile
/// (`GET /debug/pprof/profile?seconds=N`, a flamegraph SVG).
pub fn admin_router(registry: Registry, pool_gauges: Option<PoolGauges>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .with_state(Arc::new(AdminState { registry, pool_gauges }))
        .merge(crate::profiling::router())
}

async fn render(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    if let Some(gauges) = &state.pool_gauges {
        gauges.refresh();
    }
    let mut body = Vec::new();
    match TextEncoder::new().encode(&state.registry.gather(), &mut body) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Histogram buckets for request latencies, in seconds (0.5 ms to 10 s).
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
