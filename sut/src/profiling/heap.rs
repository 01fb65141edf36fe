//! The services' heap, from jemalloc: the allocator of every service binary when the `jemalloc`
//! feature is on (the default; each binary names [`Allocator`] as its global allocator).
//!
//! - Its size: [`allocated_bytes`], exported as `heap_allocated_bytes` on `/metrics`.
//! - Its profile: `GET /debug/pprof/heap` answers with the bytes in use by call stack, sampled
//!   by jemalloc (one sample per 512 KiB allocated, on average), as a gzipped pprof protobuf with
//!   function names (`go tool pprof`, or the harness, reads it). Sampling is decided when the
//!   process starts: only with `_RJEM_MALLOC_CONF=prof:true,…` in its environment
//!   ([`PROFILING_ENV`], [`PROFILING_CONF`]; the harness sets it for runs that take heap
//!   profiles). Otherwise jemalloc keeps no samples, costs nothing for it, and the route answers
//!   409 saying how to turn it on. Without the feature, the services use the system allocator
//!   and the route answers 501.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The environment variable jemalloc reads its options from (its name carries the `_rjem_`
/// symbol prefix the Rust build gives jemalloc).
pub const PROFILING_ENV: &str = "_RJEM_MALLOC_CONF";
/// The options that turn heap sampling on from the start, one sample per 2^19 bytes.
pub const PROFILING_CONF: &str = "prof:true,prof_active:true,lg_prof_sample:19";

/// The global allocator the service binaries declare.
#[cfg(feature = "jemalloc")]
pub type Allocator = tikv_jemallocator::Jemalloc;
/// The global allocator the service binaries declare.
#[cfg(not(feature = "jemalloc"))]
pub type Allocator = std::alloc::System;

/// The allocator's value, for `#[global_allocator] static A: Allocator = ALLOCATOR;`.
#[cfg(feature = "jemalloc")]
pub const ALLOCATOR: Allocator = tikv_jemallocator::Jemalloc;
/// The allocator's value, for `#[global_allocator] static A: Allocator = ALLOCATOR;`.
#[cfg(not(feature = "jemalloc"))]
pub const ALLOCATOR: Allocator = std::alloc::System;

/// Bytes allocated and not yet freed, as jemalloc counts them; `None` when jemalloc does not
/// serve this process's allocations (the feature is off, or the process, a test binary say,
/// kept the system allocator).
#[cfg(feature = "jemalloc")]
pub fn allocated_bytes() -> Option<u64> {
    serves_this_process().then(jemalloc_allocated).flatten()
}

#[cfg(feature = "jemalloc")]
fn jemalloc_allocated() -> Option<u64> {
    // The statistics are a snapshot taken at each epoch.
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    let allocated = tikv_jemalloc_ctl::stats::allocated::read().ok()?;
    Some(u64::try_from(allocated).unwrap_or(u64::MAX))
}

/// Whether jemalloc is the global allocator here: a 4 MiB allocation through the global
/// allocator shows in jemalloc's count only if it is (asked once).
#[cfg(feature = "jemalloc")]
fn serves_this_process() -> bool {
    static SERVES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SERVES.get_or_init(|| {
        const PROBE: u64 = 4 << 20;
        let before = jemalloc_allocated();
        let probe: Vec<u8> = Vec::with_capacity(PROBE as usize);
        let after = jemalloc_allocated();
        drop(std::hint::black_box(probe));
        matches!((before, after), (Some(before), Some(after)) if after >= before + PROBE)
    })
}

/// Bytes allocated and not yet freed: unknown without jemalloc.
#[cfg(not(feature = "jemalloc"))]
pub fn allocated_bytes() -> Option<u64> {
    None
}

/// The heap profile's route.
pub(super) fn router() -> Router {
    Router::new().route("/debug/pprof/heap", get(heap))
}

#[cfg(feature = "jemalloc")]
async fn heap() -> Response {
    let Some(ctl) = jemalloc_pprof::PROF_CTL.as_ref() else { return sampling_off() };
    let mut ctl = ctl.clone().lock_owned().await;
    if !ctl.activated() {
        return sampling_off();
    }
    // Dumping reads and symbolises every sampled stack: blocking work, off the async workers.
    match tokio::task::spawn_blocking(move || ctl.dump_pprof()).await {
        Ok(Ok(pprof)) => ([(header::CONTENT_TYPE, "application/octet-stream")], pprof).into_response(),
        Ok(Err(e)) => failed(&e.to_string()),
        Err(e) => failed(&e.to_string()),
    }
}

#[cfg(not(feature = "jemalloc"))]
async fn heap() -> Response {
    (StatusCode::NOT_IMPLEMENTED, "heap profiles need the service built with the `jemalloc` feature\n").into_response()
}

#[cfg(feature = "jemalloc")]
fn sampling_off() -> Response {
    let message = format!("heap sampling is off: start the service with {PROFILING_ENV}={PROFILING_CONF}\n");
    (StatusCode::CONFLICT, message).into_response()
}

#[cfg(feature = "jemalloc")]
fn failed(error: &str) -> Response {
    tracing::error!(error, "heap profile failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "heap profile failed; see the service log\n").into_response()
}
