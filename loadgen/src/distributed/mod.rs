//! # Distributed runs: many generators, one run
//!
//! A coordinator (`loadgen coordinate`) runs a scenario as any run does — the target set up or
//! checked, the samplers, thresholds, live record, results folder and reports — but its load is
//! sent by workers (`loadgen worker`, or replicas of a Docker Swarm service). Each worker gets an
//! equal share of the run as k6's execution segments split one: every stream's arrivals
//! interleaved (worker `i` of `n` sends arrivals `i, i+n, i+2n, …` of the whole schedule, so
//! together they are exactly it), each pool and closed-model user count split, and a block of
//! the users no other worker acts for. The workers start at one instant, send each second's HDR
//! intervals and counters as they measure them, and the coordinator merges them into its own
//! recorder: the merged histograms are the sum of the workers', count for count.
//!
//! - [`wire`]: the messages, HDR histograms encoded losslessly.
//! - [`coordinator`]: shares handed out, the common start, seconds merged, stops relayed, lost
//!   workers noticed, clocks compared.
//! - [`worker`]: a share joined, run, streamed, and its folder handed over.
//! - [`swarm`]: the workers as a Docker Swarm service of the loadgen image.
//! - [`kubernetes`]: the manifests of a distributed run on Kubernetes (an Indexed Job of workers).

pub mod coordinator;
pub mod kubernetes;
pub mod swarm;
pub mod wire;
pub mod worker;
