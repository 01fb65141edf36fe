//! The `loadgen` command: parses options, runs, and exits with 0 (thresholds passed), 99 (a
//! threshold failed) or 1 (the run could not be done or ended early, with a message saying why).
//!
//! Run with: `cargo run --release -p loadgen -- scenario3 --rps 500 --eps 2000`

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use loadgen::plan::{Plan, RunArgs};
use loadgen::scenario::Scenario;
use loadgen::{EXIT_ERROR, EXIT_PASSED, EXIT_THRESHOLDS_FAILED, scenarios, terminal};

/// Gauntlet: load tests for the challenge service, with truthful numbers.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// API load: GET /v1/challenges and claims at an arrival rate (--rps).
    Scenario1(RunArgs),
    /// Event load: OnMessage login and stat updates at an arrival rate (--eps), ≤500 in flight.
    Scenario2(RunArgs),
    /// Scenarios 1 and 2 at once.
    Scenario3(RunArgs),
    /// Scenario 3 with the database deep dive and CPU flamegraphs of each service.
    Scenario4(RunArgs),
    /// End-to-end latency: from an event's send to its effect in the API.
    Scenario5(RunArgs),
    /// Runs a scenario file.
    Run {
        /// The scenario file (YAML).
        file: PathBuf,
        #[command(flatten)]
        args: RunArgs,
    },
}

fn main() {
    let cli = Cli::parse();
    let (scenario, args) = match cli.command {
        Command::Scenario1(args) => (scenarios::builtin("scenario1"), args),
        Command::Scenario2(args) => (scenarios::builtin("scenario2"), args),
        Command::Scenario3(args) => (scenarios::builtin("scenario3"), args),
        Command::Scenario4(args) => (scenarios::builtin("scenario4"), args),
        Command::Scenario5(args) => (scenarios::builtin("scenario5"), args),
        Command::Run { file, args } => (Scenario::load(&file), args),
    };
    let plan =
        match scenario.map_err(anyhow::Error::from).and_then(|s| Plan::new(s, &args).map_err(anyhow::Error::from)) {
            Ok(plan) => plan,
            Err(e) => fail(&e),
        };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap_or_else(|e| fail(&e.into()));
    match runtime.block_on(loadgen::run::execute(plan)) {
        Ok(output) => {
            println!("{}", terminal::summary_table(&output.summary));
            println!("results: {}", output.folder.display());
            if let Some(reason) = &output.summary.interrupted {
                eprintln!("loadgen: the run ended early: {reason}; the results cover the time that ran");
                std::process::exit(EXIT_ERROR);
            }
            std::process::exit(if output.summary.passed { EXIT_PASSED } else { EXIT_THRESHOLDS_FAILED });
        }
        Err(e) => fail(&e.into()),
    }
}

fn fail(error: &anyhow::Error) -> ! {
    eprintln!("loadgen: error: {error:#}");
    std::process::exit(EXIT_ERROR);
}
