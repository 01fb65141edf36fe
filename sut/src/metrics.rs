//! Prometheus metrics: one registry per service instance (so tests can run many instances in one
//! process), the database pool gauges and the async runtime's figures every service exports, and
//! the admin router serving them.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Counter, Encoder, IntCounter, IntGauge, Registry, TextEncoder};
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

/// The tokio runtime's own figures, the async counterpart of a goroutine profile, as far as
/// tokio's stable metrics go: `tokio_workers`, `tokio_alive_tasks`, `tokio_global_queue_depth`,
/// and the counters `tokio_worker_busy_seconds_total` and `tokio_worker_parks_total` over every
/// worker. Blocking threads and budget-forced yields are among tokio's unstable metrics (only
/// with `--cfg tokio_unstable`), so they are not exported. Beside them the heap's size,
/// `heap_allocated_bytes`, where the allocator counts it. Refreshed at every scrape.
#[derive(Debug, Clone)]
pub struct RuntimeGauges {
    workers: IntGauge,
    alive_tasks: IntGauge,
    global_queue_depth: IntGauge,
    busy_seconds: Counter,
    parks: IntCounter,
    /// `heap_allocated_bytes`, when jemalloc serves the process (see [`crate::profiling::heap`]).
    heap: Option<IntGauge>,
    /// `process_cpu_seconds_total` and `process_resident_memory_bytes`, Prometheus' standard
    /// names, read from `/proc/self` (Linux; absent elsewhere).
    cpu_seconds: Counter,
    resident: IntGauge,
}

impl RuntimeGauges {
    /// Registers the runtime's metrics.
    pub fn register(registry: &Registry) -> Self {
        let gauge = |name: &str, help: &str| register(registry, IntGauge::new(name, help).expect("valid metric"));
        Self {
            workers: gauge("tokio_workers", "Worker threads of the async runtime"),
            alive_tasks: gauge("tokio_alive_tasks", "Tasks alive in the async runtime"),
            global_queue_depth: gauge("tokio_global_queue_depth", "Tasks waiting in the runtime's global queue"),
            busy_seconds: register(
                registry,
                Counter::new("tokio_worker_busy_seconds_total", "Time the runtime's workers spent busy, summed")
                    .expect("valid metric"),
            ),
            parks: register(
                registry,
                IntCounter::new("tokio_worker_parks_total", "Times the runtime's workers parked (ran out of work)")
                    .expect("valid metric"),
            ),
            heap: crate::profiling::heap::allocated_bytes()
                .map(|_| gauge("heap_allocated_bytes", "Bytes allocated and not freed, as the allocator counts them")),
            cpu_seconds: register(
                registry,
                Counter::new("process_cpu_seconds_total", "User and system CPU time of the process")
                    .expect("valid metric"),
            ),
            resident: gauge("process_resident_memory_bytes", "Resident memory of the process"),
        }
    }

    /// Reads the current runtime's figures (nothing outside a runtime).
    pub fn refresh(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        let metrics = handle.metrics();
        let workers = metrics.num_workers();
        self.workers.set(i64::try_from(workers).unwrap_or(i64::MAX));
        self.alive_tasks.set(i64::try_from(metrics.num_alive_tasks()).unwrap_or(i64::MAX));
        self.global_queue_depth.set(i64::try_from(metrics.global_queue_depth()).unwrap_or(i64::MAX));
        let busy: f64 = (0..workers).map(|w| metrics.worker_total_busy_duration(w).as_secs_f64()).sum();
        let parks: u64 = (0..workers).map(|w| metrics.worker_park_count(w)).sum();
        raise_to(&self.busy_seconds, busy);
        self.parks.inc_by(parks.saturating_sub(self.parks.get()));
        if let (Some(gauge), Some(bytes)) = (&self.heap, crate::profiling::heap::allocated_bytes()) {
            gauge.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        self.refresh_process();
    }

    /// Reads the process's CPU time and resident memory.
    fn refresh_process(&self) {
        if let Some((cpu, resident)) = process_figures() {
            raise_to(&self.cpu_seconds, cpu);
            self.resident.set(i64::try_from(resident).unwrap_or(i64::MAX));
        }
    }
}

/// Moves a counter up to a total read elsewhere (counters only go up).
fn raise_to(counter: &Counter, total: f64) {
    if total > counter.get() {
        counter.inc_by(total - counter.get());
    }
}

/// This process's CPU seconds (user + system) and resident bytes, from `/proc/self`.
fn process_figures() -> Option<(f64, u64)> {
    /// Linux reports CPU times in USER_HZ ticks, 100 per second on every architecture.
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some((ticks as f64 / TICKS_PER_SECOND, kib * 1024))
}

#[derive(Clone)]
struct AdminState {
    registry: Registry,
    pool_gauges: Option<PoolGauges>,
    runtime: RuntimeGauges,
}

/// The admin port's router: `GET /metrics` in the Prometheus text format (with the runtime's
/// figures, [`RuntimeGauges`]), and the CPU profile (`GET /debug/pprof/profile?seconds=N`, a
/// flamegraph SVG).
pub fn admin_router(registry: Registry, pool_gauges: Option<PoolGauges>) -> Router {
    let runtime = RuntimeGauges::register(&registry);
    Router::new()
        .route("/metrics", get(render))
        .with_state(Arc::new(AdminState { registry, pool_gauges, runtime }))
        .merge(crate::profiling::router())
}

async fn render(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    if let Some(gauges) = &state.pool_gauges {
        gauges.refresh();
    }
    state.runtime.refresh();
    let mut body = Vec::new();
    match TextEncoder::new().encode(&state.registry.gather(), &mut body) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Histogram buckets for request latencies, in seconds (0.5 ms to 10 s).
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_figures_are_read_and_exported_under_prometheus_standard_names() {
        let (cpu, resident) = process_figures().expect("/proc/self is readable on Linux");
        assert!(cpu >= 0.0 && resident > 1024 * 1024, "cpu {cpu} s, resident {resident} B");
        let registry = Registry::new();
        RuntimeGauges::register(&registry).refresh_process();
        let names: Vec<String> = registry.gather().iter().map(|f| f.name().to_owned()).collect();
        for name in ["process_cpu_seconds_total", "process_resident_memory_bytes"] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
        let resident_now =
            registry.gather().iter().find(|f| f.name() == "process_resident_memory_bytes").unwrap().get_metric()[0]
                .get_gauge()
                .get_value();
        assert!(resident_now > 1024.0 * 1024.0, "{resident_now}");
    }
}
