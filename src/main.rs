//! Command line only: parse, load the configuration, call into the library.

use clap::{Parser, Subcommand};

/// mimalloc: the dispatcher allocates per record and per request; glibc's allocator spent
/// a fifth of the CPU in the benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tokio_util::sync::CancellationToken;

use webhook_dispatcher::config::Config;
use webhook_dispatcher::{demo, replay, telemetry};

#[derive(Parser)]
#[command(version, about = "Kafka campaign triggers in, authenticated webhooks out.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (configuration: defaults, WD_CONFIG, WD_* variables).
    Run,
    /// Self-contained demo: embedded Kafka, local receivers, sample triggers, a summary.
    Demo(demo::DemoOptions),
    /// Print the effective configuration (secrets masked) and exit.
    Config,
    /// The dead-letter topic: list or replay what is on it.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
}

#[derive(Subcommand)]
enum DlqAction {
    /// List dead letters (reason, event, template, campaign, attempts, last error).
    Inspect {
        #[command(flatten)]
        filter: replay::Filter,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Send dead letters through again: failed deliveries to retry tier 1 (attempts start
    /// afresh, same Idempotency-Key), whole records to the trigger topic.
    Replay {
        #[command(flatten)]
        filter: replay::Filter,
        /// Show what would be replayed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::load() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("cannot start the tokio runtime");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Config => {
                println!("{config:#?}");
                Ok(())
            }
            Command::Run => {
                if let Err(err) = config.require_for_run() {
                    eprintln!("error: {err}");
                    std::process::exit(2);
                }
                telemetry::init(config.log_format);
                webhook_dispatcher::run(config, shutdown_on_signal()).await
            }
            Command::Demo(options) => demo::run(options, shutdown_on_signal()).await,
            Command::Dlq { action } => {
                if let Err(err) = config.require_brokers() {
                    eprintln!("error: {err}");
                    std::process::exit(2);
                }
                dlq(&config, action).await
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dlq(config: &Config, action: DlqAction) -> anyhow::Result<()> {
    let (filter, json, replaying) = match &action {
        DlqAction::Inspect { filter, json } => (filter, *json, false),
        DlqAction::Replay {
            filter,
            dry_run,
            json,
        } => (filter, *json, !dry_run),
    };
    let letters = replay::read(config, filter)?;
    for letter in &letters {
        if json {
            println!("{}", serde_json::to_string(letter)?);
        } else {
            println!("{}", replay::describe(letter));
        }
    }
    match action {
        DlqAction::Inspect { .. } => eprintln!("{} dead letters", letters.len()),
        DlqAction::Replay { .. } if !replaying => {
            eprintln!(
                "{} dead letters would be replayed (dry run: nothing sent)",
                letters.len()
            )
        }
        DlqAction::Replay { .. } => {
            replay::replay(config, &letters).await?;
            eprintln!("{} dead letters replayed", letters.len());
        }
    }
    Ok(())
}

/// Cancelled on SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("cannot listen for SIGTERM");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown signal received");
        cancel.cancel();
    });
    token
}
