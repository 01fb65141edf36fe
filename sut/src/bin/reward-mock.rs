//! The reward platform mock: entitlement and wallet-credit endpoints with injected latency and
//! failures.
//!
//! Run with: `cargo run -p sut --bin reward-mock -- --latency uniform:50ms..200ms --failure-rate 0.01`

use clap::Parser;
use sut::services::reward_mock::{RewardMock, RewardMockSettings};
use tokio_util::sync::CancellationToken;

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
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            sut::shutdown::signal().await;
            shutdown.cancel();
        }
    });
    mock.run(shutdown).await?;
    Ok(())
}
