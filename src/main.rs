//! Command line only: parse, load the configuration, call into the library.

use clap::{Parser, Subcommand};

/// mimalloc: the dispatcher allocates per record and per request; glibc's allocator spent
/// a fifth of the CPU in the benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tokio_util::sync::CancellationToken;

use webhook_dispatcher::config::Config;
use webhook_dispatcher::{demo, telemetry};

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
