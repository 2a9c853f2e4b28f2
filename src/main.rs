//! Command line only: parse, load the configuration, call into the library.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use tokio_util::sync::CancellationToken;

use webhook_dispatcher::admin::problem::Problem;
use webhook_dispatcher::admin::{api, cli};
use webhook_dispatcher::config::Config;
use webhook_dispatcher::{demo, telemetry};

/// mimalloc: the dispatcher allocates per record and per request; glibc's allocator spent
/// a fifth of the CPU in the benchmark.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "Kafka campaign triggers in, authenticated webhooks out.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// JSON output for scripts: `config`, `template`, `token`, `stats`, `campaign` and `attempts` print one JSON
    /// document, `dlq` one object per line; a failure prints an RFC 9457 problem object on
    /// stdout; `demo` prints its closing summary as one JSON object (the rest on stderr).
    /// `run` logs JSON with WD_LOG_FORMAT=json instead; `completions`, `man` and `openapi`
    /// ignore it.
    #[arg(long, global = true)]
    json: bool,
    /// A configuration file layered over the defaults (same keys as config/default.toml).
    #[arg(long, global = true, env = "WD_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (configuration: defaults, WD_CONFIG, WD_* variables). Logs go to
    /// stderr, JSON or text as WD_LOG_FORMAT says; --json does not apply.
    Run,
    /// Self-contained demo: embedded Kafka, local receivers, sample triggers, a summary
    /// (with --json, the summary as one JSON object on stdout).
    Demo(demo::DemoOptions),
    /// Print the effective configuration as TOML (JSON with --json), shaped like
    /// config/default.toml, secrets masked as ****, and exit.
    Config,
    /// The dead-letter topic: list or replay what is on it.
    Dlq {
        #[command(subcommand)]
        action: cli::DlqAction,
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
    /// Pause, resume or cancel a campaign (by targetId).
    Campaign {
        #[command(subcommand)]
        action: cli::CampaignAction,
    },
    /// The delivery log: an event's attempts, or a campaign's.
    Attempts {
        #[command(subcommand)]
        action: cli::AttemptsAction,
    },
    /// Print a shell completion script (e.g. `webhook-dispatcher completions bash >
    /// /etc/bash_completion.d/webhook-dispatcher`).
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of the command line.
    Man,
    /// Print the admin API's OpenAPI 3.1 document (the one served at /v1/openapi.json).
    Openapi,
    /// Development aid: an embedded Kafka cluster (librdkafka's mock broker) in its own
    /// process, for benchmarks and deployment checks. Prints its bootstrap servers, then
    /// runs until SIGTERM or Ctrl-C.
    #[command(hide = true)]
    MockKafka {
        /// Topics to create, `name:partitions`, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "campaign-triggers:4,webhook-retry-1:2,webhook-retry-2:2,webhook-retry-held:2,webhook-dlq:2"
        )]
        topics: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    let json = cli.json;
    if let Some(code) = without_config(&cli.command, json) {
        return code;
    }
    // `--config` stands for WD_CONFIG (clap has read the variable into it already).
    let vars = std::env::vars().filter(|(key, _)| key != "WD_CONFIG").chain(
        cli.config
            .map(|path| ("WD_CONFIG".to_string(), path.display().to_string())),
    );
    let config = match Config::load_from(vars) {
        Ok(config) => config,
        Err(err) => {
            report(json, "invalid_config", err.to_string());
            return ExitCode::from(2);
        }
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(err) => {
            report(json, "failed", format!("cannot start the async runtime: {err}"));
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command, config, json)) {
        Ok(()) => ExitCode::SUCCESS,
        // Its summary (one JSON object with --json) already says so.
        Err(err) if err.is::<demo::Unfinished>() => ExitCode::FAILURE,
        Err(err) => {
            report(json, "failed", format!("{err:#}"));
            ExitCode::FAILURE
        }
    }
}

/// The main thread's event loop. Each delivery's tasks (record, HTTP connection, consumer)
/// stay on one thread: tasks waking one another across threads cost more CPU than the
/// delivery's own work (docs/performance.md). `worker_threads` above 1 adds loops, each
/// with its own share of the trigger topic (`event_loops`).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

/// The commands that need no configuration; `None` for the others.
fn without_config(command: &Command, json: bool) -> Option<ExitCode> {
    match command {
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(*shell, &mut command, "webhook-dispatcher", &mut std::io::stdout());
            Some(ExitCode::SUCCESS)
        }
        Command::Man => Some(
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    report(json, "failed", format!("{err}"));
                    ExitCode::FAILURE
                }
            },
        ),
        Command::Openapi => {
            println!("{}", api::document_json());
            Some(ExitCode::SUCCESS)
        }
        _ => None,
    }
}

/// `run`: the service, once its configuration (the `OTEL_*` variables included) is known to
/// be usable; otherwise exit 2 with the key named.
async fn serve(config: Config, json: bool) -> anyhow::Result<()> {
    if let Err(err) = config.require_for_run() {
        report(json, "invalid_config", err.to_string());
        std::process::exit(2);
    }
    let _logs = telemetry::init(config.log_format);
    // Declared after the logs: dropped first, it sends the spans still batched.
    let _traces = match webhook_dispatcher::trace::init() {
        Ok(guard) => guard,
        Err(err) => {
            report(json, "invalid_config", err);
            std::process::exit(2);
        }
    };
    webhook_dispatcher::run(config, shutdown_on_signal()).await
}

async fn dispatch(command: Command, config: Config, json: bool) -> anyhow::Result<()> {
    match command {
        Command::Config => cli::print_config(&config, json),
        Command::Completions { .. } | Command::Man | Command::Openapi => Ok(()),
        Command::Run => serve(config, json).await,
        Command::Demo(options) => demo::run(options, json, shutdown_on_signal()).await,
        Command::Dlq { action } => {
            if let Err(err) = config.require_brokers() {
                report(json, "invalid_config", err.to_string());
                std::process::exit(2);
            }
            cli::dlq(&config, action, json).await
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
        Command::Campaign { action } => {
            let admin = webhook_dispatcher::admin_for_cli(&config).await?;
            cli::campaign(&admin, action, json).await.map(exit)
        }
        Command::Attempts { action } => {
            let admin = webhook_dispatcher::admin_for_cli(&config).await?;
            cli::attempts(&admin, action, json).await.map(exit)
        }
        Command::MockKafka { topics } => demo::embedded_kafka::serve(&topics, shutdown_on_signal()).await,
    }
}

/// Reports a failure: a problem object on stdout with `--json`, else a line on stderr.
/// `invalid_config` (exit code 2) is the caller's to fix; anything else (exit code 1) is not.
fn report(json: bool, error: &str, message: String) {
    use axum::http::StatusCode;
    let status = match error {
        "invalid_config" => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    cli::report_failure(json, &Problem::new(status, error, message));
}

/// A command line clap refuses: its message on stderr and exit code 2, or, with `--json`
/// anywhere on the line, a problem object (`invalid_usage`, 400) on stdout; help and
/// version print as usual.
fn usage_error(err: clap::Error) -> ExitCode {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    // `--json` anywhere before a `--` that ends the options.
    let wants_json = std::env::args_os()
        .skip(1)
        .take_while(|arg| arg != "--")
        .any(|arg| arg == "--json");
    // Help and version asked for print as usual; help shown because a subcommand is
    // missing is a usage error like the others.
    let asked = matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
    if !wants_json || asked {
        err.exit();
    }
    let message = if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        "a subcommand is missing (see --help)".to_string()
    } else {
        // clap's message: the lines before the blank line and the usage, joined.
        let rendered = err.render().to_string();
        let lines: Vec<&str> = rendered
            .lines()
            .map(str::trim)
            .take_while(|line| !line.is_empty() && !line.starts_with("Usage:"))
            .collect();
        let joined = lines.join(" ");
        joined.strip_prefix("error: ").unwrap_or(&joined).to_string()
    };
    let mut problem = Problem::new(axum::http::StatusCode::BAD_REQUEST, "invalid_usage", message);
    match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(argument)) => problem = problem.with_field(argument.clone()),
        Some(ContextValue::Strings(arguments)) => problem = problem.with_field(arguments.join(", ")),
        _ => {}
    }
    cli::report_failure(true, &problem);
    ExitCode::from(2)
}

/// Leaves with the operation's exit code when it is not success.
fn exit(code: ExitCode) {
    if code != ExitCode::SUCCESS {
        std::process::exit(1);
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
