//! The reward platform: the client the challenge service grants rewards through, and the mock
//! platform service (a product feature: a separate HTTP service with latency and failure
//! injection, so slow and failing platforms can be load-tested).

pub mod client;
pub mod mock;

pub use client::{GrantError, RetryPolicy, RewardClient, grant_key, parse_grant_key};
pub use mock::{Latency, MockSettings, MockStats};
