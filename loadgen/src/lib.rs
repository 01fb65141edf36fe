//! # Gauntlet's harness
//!
//! Drives REST and gRPC load at the challenge service on goose, measures it truthfully (open
//! model, latency from the intended start, HDR histograms), and writes a results folder.
//!
//! # Layout
//!
//! The flow is CLI options → [`plan::Plan`] → an environment → the engine with the samplers beside it →
//! a results folder; each arrow is a plain data type.
//!
//! - [`scenario`]: scenario files (YAML) and their validation; [`scenarios`]: the built-in ones.
//! - [`executor`]: k6's executors and their rate curves; [`arrivals`]: the arrival schedule of
//!   an open-model stream (a precise dispatcher thread and two counters).
//! - [`threshold`]: k6's thresholds with k6's metric names, tag filters and abort options,
//!   judged live every second and over windows.
//! - [`plan`]: command-line options validated into a plan.
//! - [`environment`]: a self-provisioned PostgreSQL + SUT (`--store` picks its progress layout,
//!   `--seed-users` stores progress for many users first), or an external target.
//! - [`docker`]: the SUT as containers through the Docker engine (images, stack, health checks)
//!   and the container stats sampler.
//! - [`engine`]: goose users paced by the schedules; [`workload`]: what each operation sends;
//!   [`http`]: each user's lean HTTP/1.1 client.
//! - [`recorder`]: HDR histograms per operation, per run and per second, recorded per thread.
//! - [`observe`]: what the SUT, its database and loadgen itself did meanwhile (processes,
//!   PostgreSQL, `/metrics`, CPU profiles).
//! - [`faults`]: faults a scenario schedules (the database stopped, the reward mock slowed or
//!   failing), injected during the load, and each one's verdict (errors meanwhile, recovery).
//! - [`integrity`]: the SUT's books (goals read through the API, the reward mock's grants)
//!   against what the harness sent: events lost or applied twice, goals granted twice.
//! - [`summary`], [`results`], [`terminal`]: `summary.json`, the results folder, the terminal.
//! - [`stop`]: why a run stops early, and the process's one signal handler.
//! - [`run`]: one run from plan to results.
//! - [`sweep`]: load levels stepped and bisected to the breaking point (`capacity.json`).
//! - [`report`]: the three documents and comparisons (runs that differ in a SUT setting side by
//!   side), from saved results alone.

pub mod arrivals;
pub mod docker;
pub mod engine;
pub mod environment;
pub mod executor;
pub mod faults;
pub mod http;
pub mod integrity;
pub mod observe;
pub mod plan;
pub mod recorder;
pub mod report;
pub mod results;
pub mod run;
pub mod scenario;
pub mod scenarios;
pub mod stop;
pub mod summary;
pub mod sweep;
pub mod terminal;
pub mod threshold;
pub mod workload;

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
