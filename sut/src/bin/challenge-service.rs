//! The challenge service: REST API on `--port`, `/metrics` on `--admin-port`.
//!
//! Run with:
//! `cargo run -p sut --bin challenge-service -- --database-url postgres://… --jwt-secret s3cret`

use clap::Parser;
use sut::services::challenge::{ChallengeService, ChallengeServiceSettings};

/// jemalloc with the `jemalloc` feature (heap size and profiles, `sut::profiling::heap`).
#[global_allocator]
static ALLOCATOR: sut::profiling::heap::Allocator = sut::profiling::heap::ALLOCATOR;

/// The challenge service of the system under test (REST, SPEC §3).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    settings: ChallengeServiceSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sut::init_tracing();
    let cli = Cli::parse();
    let config = sut::services::load_config(&cli.settings.challenges_config)?;
    let service = ChallengeService::build(&cli.settings, config).await?;
    let shutdown = sut::shutdown::token_on_signal();
    service.run(shutdown).await?;
    Ok(())
}
