//! # Definition: what a run is, before anything runs
//!
//! A scenario file (or a built-in one) and the command line, validated into a [`plan::Plan`]
//! that the rest of loadgen takes as given: bad input stops here, with a message naming what
//! was wrong.
//!
//! - [`scenario`]: scenario files (YAML), read and validated; [`builtin`]: the built-in ones.
//! - [`stream`]: one stream of load as written, and the executor it gives.
//! - [`executor`]: k6's executors and the rate curves of the open-model ones.
//! - [`threshold`]: k6's thresholds as written (metrics, tag filters, expressions).
//! - [`fault`]: faults a scenario schedules.
//! - [`text`]: durations and checked numbers as a scenario writes them.
//! - [`options`]: the options every run subcommand shares, as parsed.
//! - [`plan`]: the options and a scenario validated into a plan.

pub mod builtin;
pub mod executor;
pub mod fault;
pub mod options;
pub mod plan;
pub mod scenario;
pub mod stream;
pub mod text;
pub mod threshold;
