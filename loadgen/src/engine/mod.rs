//! # The engine: load sent at the schedule, measured truthfully
//!
//! Goose virtual users paced by arrival schedules, each arrival's operation sent and recorded
//! from its *intended* start. The engine knows how to send and measure; what to send and how to
//! check the answer is [`crate::target`]'s.
//!
//! - [`runner`]: goose users, one goose scenario per stream, the start gate.
//! - [`arrivals`]: the arrival schedule of an open-model stream (a precise dispatcher thread and
//!   two counters).
//! - [`workload`]: what each operation sends, retries and records.
//! - [`http`]: each user's lean HTTP/1.1 client.
//! - [`recorder`]: HDR histograms per operation, per run and per second, recorded per thread.
//! - [`ledger`]: what was sent to the audited users and what became of it.
//! - [`stop`]: why a run stops early, and the process's one signal handler.

pub mod arrivals;
pub mod http;
pub mod ledger;
pub mod recorder;
pub mod runner;
pub mod stop;
pub mod workload;

pub use runner::{EngineError, EngineOptions, EngineOutcome, StartGate, run, start_gate, start_gate_at};
