//! The reward platform mock: entitlement and wallet-credit endpoints with injected latency and
//! failures.
//!
//! Run with: `cargo run -p sut --bin reward-mock -- --latency uniform:50ms..200ms --failure-rate 0.01`

use clap::Parser;
use sut::services::reward_mock::{RewardMock, RewardMockSettings};

/// jemalloc with the `jemalloc` feature (heap size and profiles, `sut::profiling::heap`).
#[global_allocator]
static ALLOCATOR: sut::profiling::heap::Allocator = sut::profiling::heap::ALLOCATOR;

/// The reward platform mock of the system under test (SPEC §4).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    settings: RewardMockSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sut::init_tracing();
    let cli = Cli::parse();
    let mock = RewardMock::build(&cli.settings).await?;
    let shutdown = sut::shutdown::token_on_signal();
    mock.run(shutdown).await?;
    Ok(())
}
