//! The `silo` command: `serve` runs the proxy, `check-config` validates a file.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "silo",
    version,
    about = "MySQL/MariaDB routing proxy for database-per-tenant SaaS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file and print every problem found.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match silo::config::Config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: OK ({} backends, {} plans, {} tenants, {} users)",
                    config.display(),
                    c.backends.len(),
                    c.plans.len(),
                    c.tenants.len(),
                    c.users.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for e in &errors.errors {
                    if e.key.is_empty() {
                        eprintln!("{}: {}", config.display(), e.message);
                    } else {
                        eprintln!("{}: {}: {}", config.display(), e.key, e.message);
                    }
                }
                ExitCode::FAILURE
            }
        },
        Command::Serve { config } => serve(config),
    }
}

fn serve(path: PathBuf) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match silo::config::Config::load(&path) {
        Ok(c) => c,
        Err(errors) => {
            for line in errors.to_string().lines() {
                tracing::error!("{}: {line}", path.display());
            }
            return ExitCode::FAILURE;
        }
    };
    let threads = config.runtime.threads();
    let catalog = silo::catalog::Catalog::file(path, config.clone());
    match silo::server::run_threaded(config, catalog, threads, |_, _| {}, shutdown_signal()) {
        Ok(()) => {
            tracing::info!("shut down");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
