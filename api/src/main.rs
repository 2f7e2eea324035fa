//! `sagaplane`: the saga orchestrator.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sagaplane_api::{bench, cli, definitions, telemetry, Application, Settings};

/// Many small, short-lived allocations per step (JSON, messages): mimalloc
/// serves them with less time spent in the allocator than the system's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sagaplane",
    version,
    about = "Saga orchestrator for cross-cloud order workflows"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the orchestrator and its HTTP API.
    Serve {
        /// TOML configuration file (see README.md); environment variables override it.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Log JSON lines instead of text.
        #[arg(long)]
        log_json: bool,
    },
    /// Measure throughput and latency of the order saga over HTTP.
    Bench(bench::BenchArgs),
    /// Find, inspect and act on sagas through a running server's API.
    Sagas {
        #[command(flatten)]
        remote: cli::Remote,
        #[command(subcommand)]
        command: cli::SagasCommand,
    },
    /// Check saga definition files offline.
    Definitions {
        #[command(subcommand)]
        command: DefinitionsCommand,
    },
    /// List, redrive and discard dead letters through a running server's API.
    DeadLetters {
        #[command(flatten)]
        remote: cli::Remote,
        #[command(subcommand)]
        command: cli::DeadLettersCommand,
    },
}

#[derive(Subcommand)]
enum DefinitionsCommand {
    /// Check each file (or folder of `*.toml` files) as `serve` would load it;
    /// exits 1 after printing every problem.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve { config, log_json } => {
            let _telemetry = telemetry::init("info", log_json);
            let settings = Settings::load(config.as_deref()).context("Invalid configuration")?;
            let app = Application::build(settings).await?;
            app.run_until_stopped().await.context("HTTP server failed")
        }
        Command::Bench(args) => bench::run(args).await,
        Command::Definitions {
            command: DefinitionsCommand::Check { files },
        } => operator_exit(definitions::check(&files)),
        Command::Sagas { remote, command } => operator_exit(cli::sagas(remote, command).await),
        Command::DeadLetters { remote, command } => {
            operator_exit(cli::dead_letters(remote, command).await)
        }
    }
}

/// An operator command's error is the API's answer, not a crash: print it
/// plainly (no backtrace) and exit with status 1.
fn operator_exit(result: anyhow::Result<()>) -> anyhow::Result<()> {
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}
