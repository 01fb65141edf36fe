//! # The system under test
//!
//! A Rust implementation of the game backend's challenge service at its second milestone, so the
//! harness can be pointed at it or at the production service unchanged (`SPEC.md`).
//!
//! # Layout
//!
//! - [`challenges`]: the challenge configuration (load, validate, index) and the fixtures.
//! - [`db`]: the pool, migrations, the `user_goal_progress` row and the classification of
//!   database errors.
//! - [`auth`]: HS256 JWT and the mock-user mode.
//! - [`api`]: the challenge service's REST routes, its errors and the `GET` view.
//! - [`reward`]: the reward platform client (retries, budget) and the platform mock.
//! - [`events`]: the event handler: gRPC services (validation at the door) → updates → buffer →
//!   flusher → store, in one of two layouts (`--store per-stat|per-goal`, see
//!   [`events::store`]); the per-stat rules in [`events::derive`]. The REST API reads progress
//!   through the same store.
//! - [`services`]: each service as an application that binds its ports and runs until shut
//!   down; the binaries in `src/bin` are thin wrappers around them.
//! - [`profiling`]: what every admin port serves about the process: CPU flamegraphs, heap
//!   profiles and the heap's size (jemalloc, the services' allocator).
//! - [`pg_cluster`]: a throwaway PostgreSQL cluster (initdb in a temporary folder), for tests
//!   and the harness's self-provisioned runs (not to be confused with [`db`], the services' own
//!   database access).
//! - [`metrics`], [`duration`], [`shutdown`]: small shared pieces.

pub mod api;
pub mod auth;
pub mod challenges;
pub mod db;
pub mod duration;
pub mod events;
pub mod metrics;
pub mod pg_cluster;
pub mod profiling;
pub mod reward;
pub mod services;
pub mod shutdown;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).try_init();
}
