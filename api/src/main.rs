//! `sagaplane`: the saga orchestrator.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sagaplane_api::{bench, telemetry, Application, Settings};

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
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve { config, log_json } => {
            telemetry::init("info", log_json);
            let settings = Settings::load(config.as_deref()).context("Invalid configuration")?;
            let app = Application::build(settings).await?;
            app.run_until_stopped().await.context("HTTP server failed")
        }
        Command::Bench(args) => bench::run(args).await,
    }
}
