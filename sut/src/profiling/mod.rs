//! What every admin port serves about the process itself, beside `/metrics`:
//!
//! - [`cpu`]: `GET /debug/pprof/profile?seconds=N`, a CPU flamegraph SVG.
//! - [`heap`]: `GET /debug/pprof/heap`, a heap profile (in-use bytes by call stack, pprof's
//!   format), and the heap's size for `/metrics`; both from jemalloc, the services' allocator.

pub mod cpu;
pub mod heap;

use axum::Router;

/// The profiling routes, to merge into an admin router.
pub fn router() -> Router {
    cpu::router().merge(heap::router())
}
