//! # Gauntlet's harness
//!
//! Drives REST and gRPC load at the challenge service on goose, measures it truthfully (open
//! model, latency from the intended start, HDR histograms), watches the system under test
//! meanwhile, and writes a results folder that the reports are rendered from.
//!
//! # Layout
//!
//! The flow is CLI options → [`definition::plan::Plan`] → a target ([`deploy`]ed, or external
//! URLs) → the [`engine`] with the [`observe`] samplers beside it → a [`results`] folder →
//! [`verdict`]s → [`report`]s; each arrow is a plain data type. Dependencies point the same way:
//! a module uses only those before it in this list (tested by `tests/layout.rs`).
//!
//! - [`target`]: everything specific to the challenge service: operations, requests and their
//!   checks, fixtures, seeding, the database's tables and key queries.
//! - [`atomic`]: files written whole or not at all.
//! - [`definition`]: scenario files, built-in scenarios, k6's executors and thresholds as
//!   written, faults as scheduled, and the validated plan.
//! - [`engine`]: goose users paced by arrival schedules, the lean HTTP client, what each operation
//!   sends, the HDR recorder, the ledger of audited sends, stop reasons.
//! - [`deploy`]: the SUT provisioned as processes or Docker containers, each service as one or
//!   more replicas (and PostgreSQL).
//! - [`observe`]: what the SUT, its database, its containers and loadgen itself did meanwhile.
//! - [`faults`]: faults injected during the load, and each one's verdict.
//! - [`integrity`]: the SUT's books against what the harness sent.
//! - [`results`]: the results folder's layout, `summary.json`, and a folder read back.
//! - [`verdict`]: thresholds, live and over the run; whether a level held.
//! - [`terminal`]: what the terminal shows.
//! - [`live`]: each second as it happens, for the live dashboard and loadgen's `/metrics`;
//!   the Grafana dashboard and alert rules.
//! - [`report`]: the three documents and comparisons, from saved results alone.
//! - [`run`]: one run from plan to results folder.
//! - [`sweep`]: load levels stepped and bisected to the breaking point (`capacity.json`).
//! - [`distributed`]: one run's load sent by many workers (processes, or a Docker Swarm
//!   service) and merged by a coordinator.
//! - [`cli`]: the `loadgen` command line (the binary's `main` only calls it).

pub mod atomic;
pub mod cli;
pub mod definition;
pub mod deploy;
pub mod distributed;
pub mod engine;
pub mod faults;
pub mod integrity;
pub mod live;
pub mod observe;
pub mod report;
pub mod results;
pub mod run;
pub mod sweep;
pub mod target;
pub mod terminal;
pub mod verdict;

/// Exit code when every threshold passed.
pub const EXIT_PASSED: i32 = 0;
/// Exit code when a threshold failed, or one with `abortOnFail` stopped the run (k6's 99).
pub const EXIT_THRESHOLDS_FAILED: i32 = 99;
/// Exit code for an invalid scenario or invalid options (k6's 104, "invalid config").
pub const EXIT_INVALID: i32 = 104;
/// Exit code when a signal (Ctrl-C, SIGTERM) stopped the run (k6's 105, "external abort").
pub const EXIT_INTERRUPTED: i32 = 105;
/// Exit code when the run could not be done or ended early for another reason (an unreachable
/// target, a setup failure, a service that died mid-run).
pub const EXIT_ERROR: i32 = 1;
