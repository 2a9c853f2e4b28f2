//! Command line only: parse, load the configuration, call into the library.

use clap::{Parser, Subcommand};

/// mimalloc: the dispatcher allocates per record and per request; glibc's allocator spent
/// a fifth of the CPU in the benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tokio_util::sync::CancellationToken;

use webhook_dispatcher::config::Config;
use webhook_dispatcher::{cli, demo, replay, telemetry};

#[derive(Parser)]
#[command(version, about = "Kafka campaign triggers in, authenticated webhooks out.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// JSON output for scripts (one document, or one object per line for dlq).
    #[arg(long, global = true)]
    json: bool,
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
    /// Templates in Redis: put (after a test request), get, list, delete, import a folder.
    Template {
        #[command(subcommand)]
        action: cli::TemplateAction,
    },
    /// OAuth 2.0 tokens of a template.
    Token {
        #[command(subcommand)]
        action: cli::TokenAction,
    },
    /// A campaign's delivery counts and last error (the "Webhook Dispatch Failed" view).
    Stats {
        /// The campaign's targetId.
        #[arg(allow_negative_numbers = true)]
        target_id: i64,
    },
}

#[derive(Subcommand)]
enum DlqAction {
    /// List dead letters (reason, event, template, campaign, attempts, last error).
    Inspect {
        #[command(flatten)]
        filter: replay::Filter,
    },
    /// Send dead letters through again: failed deliveries to retry tier 1 (attempts start
    /// afresh, same Idempotency-Key), whole records to the trigger topic.
    Replay {
        #[command(flatten)]
        filter: replay::Filter,
        /// Show what would be replayed; change nothing.
        #[arg(long)]
        dry_run: bool,
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
    let json = cli.json;
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
                dlq(&config, action, json).await
            }
            Command::Template { action } => {
                let admin = webhook_dispatcher::admin_for_cli(&config).await?;
                cli::template(&admin, action, json).await.map(exit)
            }
            Command::Token { action } => {
                let admin = webhook_dispatcher::admin_for_cli(&config).await?;
                cli::token(&admin, action, json).await.map(exit)
            }
            Command::Stats { target_id } => {
                let admin = webhook_dispatcher::admin_for_cli(&config).await?;
                cli::stats(&admin, target_id, json).await.map(exit)
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

/// Leaves with the operation's exit code when it is not success.
fn exit(code: std::process::ExitCode) {
    if code != std::process::ExitCode::SUCCESS {
        std::process::exit(1);
    }
}

async fn dlq(config: &Config, action: DlqAction, json: bool) -> anyhow::Result<()> {
    let (filter, replaying) = match &action {
        DlqAction::Inspect { filter } => (filter, false),
        DlqAction::Replay { filter, dry_run } => (filter, !dry_run),
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
