//! The `silo` command: `serve` runs the proxy, `check-config` validates a
//! file, `control-plane init` creates or upgrades the control-plane schema,
//! `secret` encrypts tenant database passwords for it.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use silo::catalog::{Catalog, database};
use silo::config::Config;
use silo::secret::Secret;
use silo::secret_box::{SecretKey, to_hex};
use tracing_subscriber::EnvFilter;

/// Bound on each statement of `control-plane init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// The control-plane database.
    #[command(subcommand)]
    ControlPlane(ControlPlaneCommand),
    /// Tenant database passwords for the control plane.
    #[command(subcommand)]
    Secret(SecretCommand),
}

#[derive(Subcommand)]
enum ControlPlaneCommand {
    /// Create the control-plane schema, or apply the steps it lacks; a
    /// schema already up to date is left alone.
    Init {
        /// mysql://user:password@host:port/database (the database is
        /// created if missing). Prefer the environment variable: a command
        /// line is visible to other users of the machine.
        #[arg(long, env = "SILO_CONTROL_PLANE_URL", hide_env_values = true)]
        url: String,
    },
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Encrypt a tenant database password read from standard input; prints
    /// hex for `UNHEX('…')` in tenants.db_password_encrypted.
    Encrypt {
        /// File holding the key; without it SILO_SECRET_KEY.
        #[arg(long)]
        key_file: Option<PathBuf>,
    },
    /// Print a fresh random key (base64) for SILO_SECRET_KEY or a key file.
    GenerateKey,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Serve { config } => serve(config),
        Command::ControlPlane(ControlPlaneCommand::Init { url }) => init(Secret::new(url)),
        Command::Secret(SecretCommand::Encrypt { key_file }) => encrypt(key_file),
        Command::Secret(SecretCommand::GenerateKey) => match SecretKey::generate() {
            Ok(key) => {
                println!("{}", key.to_base64());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("silo secret generate-key: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match Config::load(path) {
        Ok(c) if c.control_plane.is_some() => {
            println!(
                "{}: OK (backends, plans, tenants and users come from the control-plane database)",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Ok(c) => {
            println!(
                "{}: OK ({} backends, {} plans, {} tenants, {} users)",
                path.display(),
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
                    eprintln!("{}: {}", path.display(), e.message);
                } else {
                    eprintln!("{}: {}: {}", path.display(), e.key, e.message);
                }
            }
            ExitCode::FAILURE
        }
    }
}

fn serve(path: PathBuf) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(errors) => {
            for line in errors.to_string().lines() {
                tracing::error!("{}: {line}", path.display());
            }
            return ExitCode::FAILURE;
        }
    };
    let threads = config.runtime.threads();
    let catalog = if config.control_plane.is_some() {
        match load_from_control_plane(&config) {
            Ok((db, config)) => {
                tracing::info!(
                    control_plane = %db.endpoint(),
                    backends = config.backends.len(),
                    plans = config.plans.len(),
                    tenants = config.tenants.len(),
                    users = config.users.len(),
                    "catalog read from the control plane"
                );
                Catalog::database(db, config)
            }
            Err(e) => {
                tracing::error!(
                    "cannot start: the catalog cannot be read from the control plane: {e}"
                );
                return ExitCode::FAILURE;
            }
        }
    } else {
        Catalog::file(path, config)
    };
    match silo::server::run_threaded(catalog, threads, |_, _| {}, shutdown_signal()) {
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

/// The first read happens before the serving runtime exists, on a runtime
/// of its own; the source keeps nothing bound to it.
fn load_from_control_plane(
    config: &Config,
) -> Result<(database::Database, Config), silo::catalog::CatalogError> {
    let runtime =
        one_shot_runtime().map_err(|e| silo::catalog::CatalogError::Unavailable(e.to_string()))?;
    runtime.block_on(database::open(config))
}

/// A runtime for one call made before serving, or instead of it.
fn one_shot_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn init(url: Secret<String>) -> ExitCode {
    let runtime = match one_shot_runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("silo control-plane init: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(database::init(&url, INIT_TIMEOUT)) {
        Ok(database::InitOutcome::Applied { names, version }) => {
            for name in names {
                println!("applied {name}");
            }
            println!("control-plane schema at version {version}");
            ExitCode::SUCCESS
        }
        Ok(database::InitOutcome::UpToDate { version }) => {
            println!("control-plane schema already at version {version}: nothing to do");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("silo control-plane init: {e}");
            ExitCode::FAILURE
        }
    }
}

fn encrypt(key_file: Option<PathBuf>) -> ExitCode {
    let key = match SecretKey::load(key_file.as_deref()) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("silo secret encrypt: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("silo secret encrypt: cannot read standard input: {e}");
        return ExitCode::FAILURE;
    }
    // `echo pass |` and a typed line end with a newline that is not part of
    // the password; only one is removed.
    if input.ends_with(b"\r\n") {
        input.truncate(input.len() - 2);
    } else if input.ends_with(b"\n") {
        input.truncate(input.len() - 1);
    }
    if std::str::from_utf8(&input).is_err() {
        eprintln!("silo secret encrypt: the password must be UTF-8 text");
        return ExitCode::FAILURE;
    }
    match key.seal(&input) {
        Ok(sealed) => {
            println!("{}", to_hex(&sealed));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("silo secret encrypt: {e}");
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
