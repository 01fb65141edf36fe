//! The event handler: the platform's `OnMessage` gRPC services on `--grpc-port`, `/metrics` on
//! `--admin-port`, flushing its buffer to PostgreSQL every `--flush-interval`.
//!
//! Run with: `cargo run -p sut --bin event-handler -- --database-url postgres://…`

use clap::Parser;
use sut::services::event_handler::{EventHandler, EventHandlerSettings};

/// jemalloc with the `jemalloc` feature (heap size and profiles, `sut::profiling::heap`).
#[global_allocator]
static ALLOCATOR: sut::profiling::heap::Allocator = sut::profiling::heap::ALLOCATOR;

/// The event handler of the system under test (gRPC, SPEC §5).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    settings: EventHandlerSettings,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    sut::init_tracing();
    let cli = Cli::parse();
    let config = sut::services::load_config(&cli.settings.challenges_config)?;
    let handler = EventHandler::build(&cli.settings, config).await?;
    let shutdown = sut::shutdown::token_on_signal();
    handler.run(shutdown).await
}
