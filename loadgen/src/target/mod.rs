//! # The target: everything loadgen knows about the challenge service
//!
//! The rest of loadgen is a load tester; this folder is what makes it one for *this* service.
//! Pointing Gauntlet at another service means writing another module like this one.
//!
//! - [`operations`]: what is measured (`GET /v1/challenges`, `OnMessage stat`, …, with k6's
//!   `name` tags), what a scenario's stream can do, the stat codes, where events' updates go.
//! - [`requests`]: the REST paths and the platform events the harness sends.
//! - [`checks`]: how answers are checked (a challenge list's shape, the goals it shows as
//!   claimable) and what became of an event or a claim (SPEC §5).
//! - [`fixtures`]: the users, their tokens, the challenge configuration, a stampede's goal.
//! - [`seed`]: progress stored in the service's tables before the load.
//! - [`database`]: the tables to watch, the harness's own statements, the key queries to
//!   explain.
//!
//! Nothing here depends on the rest of loadgen: every other module may depend on it.

pub mod checks;
pub mod database;
pub mod fixtures;
pub mod operations;
pub mod requests;
pub mod seed;

/// The services the harness runs beside the service as stand-ins for the platform (the reward
/// platform's mock). Their resources are observed and reported, but growth there is the
/// platform's bookkeeping — the mock keeps every grant and every idempotent answer for the
/// integrity audit, as the platform keeps its records — so a `leak` threshold leaves them out
/// unless it names them.
pub const PLATFORM_STAND_INS: [&str; 1] = ["reward-mock"];

/// A fixture that is unreadable or inconsistent, or progress that could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// A fixture file is unreadable or inconsistent.
    #[error("{0}")]
    Fixture(String),
    /// A statement of the seeding failed.
    #[error("database setup: {0}")]
    Database(#[from] sqlx::Error),
}
