//! Integration tests of the SUT against a real PostgreSQL, over real HTTP and gRPC.
//!
//! One test binary (one throwaway cluster for all tests, or the server named by
//! `GAUNTLET_TEST_DATABASE_URL`); every test gets its own freshly migrated database.
//! Tests that stop the database start a cluster of their own.

/// Runs each named test body (an `async fn(StoreKind)`) once per store layout.
macro_rules! for_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn per_stat() {
                super::$name(sut::events::store::StoreKind::PerStat).await
            }
            #[tokio::test]
            async fn per_goal() {
                super::$name(sut::events::store::StoreKind::PerGoal).await
            }
        }
    )*};
}

mod api;
mod events;
mod flush;
mod helpers;
mod proxy;
mod replicas;
mod reward;
mod seed;
mod server;
