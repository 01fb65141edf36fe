//! Writes the challenge configuration and users fixtures, at the reference size or larger.
//!
//! Run with: `cargo run -p sut --bin gen-fixtures -- --challenges 20 --goals 100 --users 100000 --out /tmp/big`

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use sut::challenges::{FixtureShape, generate_challenges, generate_users};

/// Generates `challenges.json` and `users.json` (the reference fixtures are 10 × 50 and 10,000).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Number of challenges.
    #[arg(long, default_value_t = 10)]
    challenges: usize,
    /// Goals per challenge.
    #[arg(long, default_value_t = 50)]
    goals: usize,
    /// Number of users.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Namespace of the users.
    #[arg(long, default_value = "test")]
    namespace: String,
    /// Output folder.
    #[arg(long, default_value = "fixtures")]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(cli.challenges > 0 && cli.goals > 0, "--challenges and --goals must be positive");
    std::fs::create_dir_all(&cli.out).with_context(|| format!("creating {}", cli.out.display()))?;
    let shape = FixtureShape { challenges: cli.challenges, goals_per_challenge: cli.goals };
    let challenges = serde_json::to_string_pretty(&generate_challenges(shape))?;
    let users = serde_json::to_string(&generate_users(cli.users, &cli.namespace))?;
    write(&cli.out.join("challenges.json"), &challenges)?;
    write(&cli.out.join("users.json"), &users)?;
    println!(
        "wrote {} challenges × {} goals and {} users to {}",
        cli.challenges,
        cli.goals,
        cli.users,
        cli.out.display()
    );
    Ok(())
}

/// Writes through a temporary file and a rename, so a reader never sees half a fixture.
fn write(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, format!("{text}\n")).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}
