//! `zerodrop`: one binary with role subcommands.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use zerodrop_server::config::LogFormat;
use zerodrop_server::Config;

#[derive(Parser)]
#[command(name = "zerodrop", version, about = "No paid order is ever dropped.")]
struct Cli {
    /// Configuration file (TOML). ZERODROP_* environment variables override it.
    #[arg(long, global = true, env = "ZERODROP_CONFIG")]
    config: Option<PathBuf>,
    /// Database URL (sqlite://… or postgres://…); overrides the configuration.
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and run the job workers (applies migrations first; starts while the
    /// database is down and keeps trying it).
    Serve {
        /// Address to listen on; overrides the configuration.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Check the whole database against zerodrop's invariants; exit 1 on any violation.
    Audit {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also check the database against the checkpoints exported to this seal log
        /// (a copy kept away from the database: see docs/OPERATIONS.md).
        #[arg(long, value_name = "FILE")]
        seal_log: Option<PathBuf>,
        /// A seal public key to trust (base64), besides the configured ones; repeatable.
        #[arg(long, value_name = "KEY")]
        seal_public_key: Vec<String>,
    },
    /// Import a provider's bill (a file, or the day's bill fetched from the provider),
    /// match it line by line, and print or write the report; differences are repaired by
    /// jobs (docs/OPERATIONS.md, "Reconciliation").
    Reconcile(zerodrop::reconcile_cmd::Args),
    /// The per-period proof: every charge of a period with its one outcome, tied to the
    /// bills and sealed by signed checkpoints; `proof verify FILE` re-checks one.
    Proof(zerodrop::proof_cmd::ProofArgs),
    /// Run the sandbox payment provider (Alipay wire format) as its own HTTP service.
    SandboxPsp(zerodrop::psp::Args),
    /// Simulated users buying with faults on; prints the outcome and the audit verdict.
    Demo(zerodrop::demo::Args),
    /// Benchmarks (not tests): see docs/BENCHMARKS.md.
    Bench {
        #[command(subcommand)]
        command: zerodrop::bench::Command,
    },
    /// Operator tasks: card-key stock, secrets.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Import card keys (one per line; blank lines and # comments skipped) into a SKU's
    /// stock. Orders waiting for stock are served at once, oldest first.
    ImportKeys {
        #[arg(long)]
        sku: String,
        file: PathBuf,
        /// Import the rest when some codes are duplicates (otherwise nothing is imported).
        #[arg(long)]
        skip_duplicates: bool,
    },
    /// Show a SKU's card-key stock.
    Stock {
        #[arg(long)]
        sku: String,
    },
    /// Print a fresh random 32-byte key, base64 (for card_keys.encryption_key).
    NewKey,
    /// Send an external order's delivery request to the platform's endpoint again.
    ReplayDelivery {
        #[arg(long)]
        order: String,
    },
    /// The attention queue: list, show and resolve items.
    Attention {
        #[command(subcommand)]
        command: zerodrop::admin_attention::AttentionCommand,
    },
    /// The seal key that signs the sealed record's checkpoints.
    SealKey {
        #[command(subcommand)]
        command: zerodrop::admin_seal::SealKeyCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration, secrets redacted, and check it.
    Check,
}

fn load_config(cli: &Cli) -> Result<Config> {
    let mut config = Config::load(cli.config.as_deref(), std::env::vars()).context("loading configuration")?;
    if let Some(url) = &cli.database_url {
        config.database_url = url.clone();
    }
    Ok(config)
}

/// Logs to stderr (stdout is for the commands' own output) at `ZERODROP_LOG`'s filter
/// (or `default`), as text or JSON lines.
fn init_tracing(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ZERODROP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).try_init(),
    };
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let secrets = known_secrets(&cli);
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            // Libraries may quote what they were given (a driver echoes a URL parameter):
            // every secret zerodrop knows of is taken out of the message.
            eprintln!("error: {}", zerodrop_server::config::scrub(&format!("{e:#}"), &secrets));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Names of `ZERODROP_*` variables whose values are secrets even when the configuration
/// they belong to does not load.
const SECRET_VARIABLE_WORDS: &[&str] = &["KEY", "SECRET", "PASSWORD", "TOKEN", "DATABASE_URL"];

/// Every secret this run could print by accident: those of the configuration, of
/// `--database-url`, and the values of variables named like secrets.
fn known_secrets(cli: &Cli) -> Vec<String> {
    use zerodrop_server::config::{url_secrets, ENV_PREFIX};
    let mut secrets = Config::load(cli.config.as_deref(), std::env::vars()).map(|c| c.secrets()).unwrap_or_default();
    if let Some(url) = &cli.database_url {
        secrets.extend(url_secrets(url));
    }
    for (name, value) in std::env::vars() {
        let secret_named = SECRET_VARIABLE_WORDS.iter().any(|w| name.contains(w));
        if name.starts_with(ENV_PREFIX) && secret_named {
            secrets.extend(url_secrets(&value));
            secrets.push(value);
        }
    }
    secrets
}

async fn run(cli: Cli) -> Result<std::process::ExitCode> {
    match &cli.command {
        Command::Serve { listen } => {
            let mut config = load_config(&cli)?;
            init_tracing("info", config.log_format);
            if let Some(listen) = listen {
                config.listen = listen.clone();
            }
            serve(config).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let config = load_config(&cli)?;
            init_tracing("info", config.log_format);
            let store = zerodrop_store::Store::connect(&config.database_url, &config.database.pool()).await?;
            let applied = store.migrate().await?;
            println!("{applied} migration(s) applied; schema at version {}", zerodrop_store::MIGRATIONS_LATEST);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Config { command: ConfigCommand::Check } => {
            let config = load_config(&cli)?;
            print!("{}", config.redacted_toml());
            zerodrop_server::app::load_catalog(&config.catalog_path)?;
            zerodrop_server::app::build_providers(&config)?;
            eprintln!("configuration is valid");
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Audit { json, seal_log, seal_public_key } => {
            let config = load_config(&cli)?;
            init_tracing("warn", config.log_format);
            let seal = zerodrop::audit::SealInputs { log: seal_log.clone(), public_keys: seal_public_key.clone() };
            zerodrop::audit::run(&config, *json, &seal).await
        }
        Command::Reconcile(args) => {
            let config = load_config(&cli)?;
            init_tracing("warn", config.log_format);
            let app = zerodrop_server::App::start(config).await?;
            zerodrop::reconcile_cmd::run(&app, args).await
        }
        Command::Proof(args) => {
            let config = load_config(&cli)?;
            init_tracing("warn", config.log_format);
            zerodrop::proof_cmd::run(&config, args).await
        }
        Command::SandboxPsp(args) => {
            init_tracing("info", LogFormat::Text);
            zerodrop::psp::run(args).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            // The demo causes faults on purpose; their warnings would bury its table.
            init_tracing("error", LogFormat::Text);
            zerodrop::demo::run(args).await
        }
        Command::Bench { command } => {
            init_tracing("warn", LogFormat::Text);
            zerodrop::bench::run(command).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Admin { command } => {
            init_tracing("warn", LogFormat::Text);
            admin(&cli, command).await
        }
    }
}

async fn admin(cli: &Cli, command: &AdminCommand) -> Result<std::process::ExitCode> {
    if let AdminCommand::NewKey = command {
        println!("{}", zerodrop_server::card_vault::Vault::generate_key()?);
        return Ok(std::process::ExitCode::SUCCESS);
    }
    if let AdminCommand::SealKey { command } = command {
        return zerodrop::admin_seal::run(&load_config(cli)?, command);
    }
    let app = zerodrop_server::App::start(load_config(cli)?).await?;
    match command {
        AdminCommand::ImportKeys { sku, file, skip_duplicates } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            match zerodrop_server::flows::card_keys::import(&app, sku, &text, *skip_duplicates).await {
                Ok(report) => {
                    println!(
                        "{}: {} code(s) read, {} imported, {} duplicate(s) in the file skipped, {} already in stock skipped; {} available now",
                        report.sku,
                        report.codes_read,
                        report.imported,
                        report.duplicates_in_file.len(),
                        report.already_in_stock.len(),
                        report.stock_available
                    );
                    Ok(std::process::ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {:#}", anyhow::Error::new(e));
                    Ok(std::process::ExitCode::FAILURE)
                }
            }
        }
        AdminCommand::Stock { sku } => {
            let mut conn = app.store.reader().await?;
            let stock = zerodrop_store::card_keys::stock(&mut conn, sku).await?;
            println!("{sku}: {} available, {} allocated, {} revoked", stock.available, stock.allocated, stock.revoked);
            Ok(std::process::ExitCode::SUCCESS)
        }
        AdminCommand::ReplayDelivery { order } => {
            match zerodrop_server::flows::delivery::replay::replay(&app.store, order).await {
                Ok(replay_id) => {
                    println!("{order}: delivery replay {replay_id} queued; a running `zerodrop serve` sends it");
                    Ok(std::process::ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {:#}", anyhow::Error::new(e));
                    Ok(std::process::ExitCode::FAILURE)
                }
            }
        }
        AdminCommand::Attention { command } => zerodrop::admin_attention::run(&app, command).await,
        AdminCommand::NewKey | AdminCommand::SealKey { .. } => Ok(std::process::ExitCode::SUCCESS),
    }
}

async fn serve(config: Config) -> Result<()> {
    if config.api.merchant_api_keys.is_empty() {
        anyhow::bail!(
            "api.merchant_api_keys is empty: set at least one key (e.g. ZERODROP_API__MERCHANT_API_KEYS='[\"…\"]')"
        );
    }
    let listener =
        tokio::net::TcpListener::bind(&config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    // Everything but the database is checked here; the database is reached (and
    // migrated) while the port already answers, however long it takes to come up.
    let app = zerodrop_server::App::open(config)?;
    tracing::info!(listen = %listener.local_addr()?, database = app.store.dialect().name(), "zerodrop serving");
    zerodrop_server::serve(app, listener, shutdown_signal()).await?;
    tracing::info!("zerodrop stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
