//! The `loadgen` command: see [`loadgen::cli`].
//!
//! Run with: `cargo run --release -p loadgen -- scenario3 --rps 500 --eps 2000`

use clap::Parser;

fn main() {
    std::process::exit(loadgen::cli::run(loadgen::cli::Cli::parse()));
}
