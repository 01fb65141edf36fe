//! Integration tests of the SUT against a real PostgreSQL, over real HTTP and gRPC.
//!
//! One test binary (one throwaway cluster for all tests, or the server named by
//! `GAUNTLET_TEST_DATABASE_URL`); every test gets its own freshly migrated database.
//! Tests that stop the database start a cluster of their own.

mod api;
mod events;
mod flush;
mod helpers;
mod proxy;
mod seed;
