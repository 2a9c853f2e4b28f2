//! The admin operations from a terminal (§8): `template put|get|list|delete|import`,
//! `token generate`, `stats`, `dlq inspect|replay` and `config`. They talk to Redis (and, for tokens and test
//! requests, to the destinations) directly, with the same configuration as `run`.
//! Human-readable output by default, JSON with `--json` (a failure is then a [`Problem`] on
//! stdout). Exit codes: 0 done, 1 the operation failed (not found, a test request that did
//! not get 200 OK, an invalid template), 2 bad configuration or usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::problem::Problem;
use super::replay;
use super::{Admin, AdminError, Saved};
use crate::auth::Auth;
use crate::config::{Config, LogFormat};
use crate::secret::MASK;
use crate::template::Template;

#[derive(Debug, clap::Subcommand)]
pub enum TemplateAction {
    /// Validate a template (JSON or YAML file, `-` for stdin), send its destination a test
    /// request and save it if that answered 200 OK.
    Put {
        /// The template file: JSON, or YAML when it ends in .yaml/.yml; `-` reads JSON from stdin.
        file: PathBuf,
        /// Save without the test request (GitOps pipelines).
        #[arg(long)]
        no_test: bool,
    },
    /// Show a template, credentials masked.
    Get {
        /// The template's id.
        id: String,
    },
    /// List every template, in id order.
    List,
    /// Delete a template.
    Delete {
        /// The template's id.
        id: String,
    },
    /// Save every *.json, *.yaml and *.yml template in a folder (each tested unless
    /// --no-test); carries on past failures and exits 1 if any.
    Import {
        /// The folder holding the templates (not searched recursively).
        dir: PathBuf,
        /// Save without test requests (GitOps pipelines).
        #[arg(long)]
        no_test: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenAction {
    /// The OAuth 2.0 "Generate" step: fetch a token with a template's credentials.
    Generate {
        /// The template's id (an OAuth 2.0 template).
        id: String,
        /// Print the access token itself instead of ****.
        #[arg(long)]
        reveal: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum DlqAction {
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

/// Prints `value` as JSON or as `human`.
fn print(json_output: bool, value: &impl serde::Serialize, human: impl FnOnce() -> String) {
    if json_output {
        println!("{}", serde_json::to_string(value).expect("serialisable"));
    } else {
        println!("{}", human());
    }
}

/// An operation's failure: stderr (or a [`Problem`] on stdout) and exit code 1.
fn failed(json_output: bool, err: &AdminError) -> ExitCode {
    report_failure(json_output, &Problem::from(err));
    ExitCode::FAILURE
}

/// Prints a failure: a [`Problem`] as one line of JSON on stdout with `--json`, else
/// `error: <message>` on stderr.
pub fn report_failure(json_output: bool, problem: &Problem) {
    if json_output {
        println!("{}", problem.to_json());
    } else {
        eprintln!("error: {}", problem.message);
    }
}

/// The effective configuration, shaped like `config/default.toml` (same keys, same
/// sections), secrets masked: TOML, or JSON with `--json`.
pub fn print_config(config: &Config, json_output: bool) -> anyhow::Result<()> {
    let view = ConfigView::new(config);
    if json_output {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", toml::to_string(&view)?);
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct ConfigView {
    trigger_topic: String,
    retry_topic_prefix: String,
    retry_delays: Vec<String>,
    dlq_topic: String,
    http_addr: String,
    metrics_addr: String,
    admin_token: String,
    allowed_networks: Vec<String>,
    https_only: bool,
    secret_key: String,
    max_inflight: usize,
    max_per_host: usize,
    partition_window: usize,
    max_pending_bytes: usize,
    max_event_bytes: usize,
    max_profiles: usize,
    max_rendered_bytes: usize,
    template_cache_ttl: String,
    drain_timeout: String,
    log_format: &'static str,
    kafka: KafkaView,
    redis: RedisView,
}

#[derive(serde::Serialize)]
struct KafkaView {
    brokers: String,
    group_id: String,
    properties: std::collections::BTreeMap<String, String>,
}

#[derive(serde::Serialize)]
struct RedisView {
    url: String,
    prefix: String,
}

impl ConfigView {
    fn new(config: &Config) -> ConfigView {
        let masked = |set: bool| if set { MASK.to_string() } else { String::new() };
        let properties = config
            .kafka
            .properties
            .iter()
            .map(|(key, property)| {
                // The property's Debug is where the rule for secret-looking keys lives.
                let value = if format!("{property:?}") == MASK {
                    MASK.to_string()
                } else {
                    property.value.clone()
                };
                (key.clone(), value)
            })
            .collect();
        ConfigView {
            trigger_topic: config.trigger_topic.clone(),
            retry_topic_prefix: config.retry_topic_prefix.clone(),
            retry_delays: config.retry_delays.iter().map(duration).collect(),
            dlq_topic: config.dlq_topic.clone(),
            http_addr: config.http_addr.to_string(),
            metrics_addr: config.metrics_addr.to_string(),
            admin_token: masked(config.admin_token.as_ref().is_some_and(|t| !t.is_empty())),
            allowed_networks: config.allowed_networks.iter().map(|n| n.to_string()).collect(),
            https_only: config.https_only,
            secret_key: masked(config.secret_keys.is_some()),
            max_inflight: config.max_inflight,
            max_per_host: config.max_per_host,
            partition_window: config.partition_window,
            max_pending_bytes: config.max_pending_bytes,
            max_event_bytes: config.max_event_bytes,
            max_profiles: config.max_profiles,
            max_rendered_bytes: config.max_rendered_bytes,
            template_cache_ttl: duration(&config.template_cache_ttl),
            drain_timeout: duration(&config.drain_timeout),
            log_format: match config.log_format {
                LogFormat::Json => "json",
                LogFormat::Text => "text",
                LogFormat::Auto => "auto",
            },
            kafka: KafkaView {
                brokers: config.kafka.brokers.clone(),
                group_id: config.kafka.group_id.clone(),
                properties,
            },
            redis: RedisView {
                url: redis_url_masked(config.redis.url.expose()),
                prefix: config.redis.prefix.clone(),
            },
        }
    }
}

/// A duration as the defaults file writes it: whole seconds as `10s`, else milliseconds.
fn duration(d: &std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// The Redis URL with only its password masked; all of it when it does not parse.
fn redis_url_masked(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() && parsed.set_password(Some(MASK)).is_err() {
                return MASK.to_string();
            }
            parsed.to_string()
        }
        Err(_) => MASK.to_string(),
    }
}

/// Reads a template file: JSON, or YAML when the name ends in .yaml/.yml.
pub fn read_template(file: &Path) -> anyhow::Result<Template> {
    let text = if file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading stdin")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let yaml = matches!(file.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
    let parsed = if yaml {
        serde_norway::from_str(&text).map_err(anyhow::Error::from)
    } else {
        serde_json::from_str(&text).map_err(anyhow::Error::from)
    };
    parsed.with_context(|| format!("{} is not a valid template", file.display()))
}

fn describe_saved(saved: &Saved) -> String {
    let verb = if saved.created { "created" } else { "replaced" };
    match &saved.test {
        Some(test) => format!(
            "saved {} ({verb}; test request: HTTP {} in {} ms)",
            saved.template.id,
            test.status.unwrap_or_default(),
            test.latency_ms
        ),
        None => format!("saved {} ({verb}; not tested)", saved.template.id),
    }
}

pub async fn template(admin: &Admin, action: TemplateAction, json_output: bool) -> anyhow::Result<ExitCode> {
    match action {
        TemplateAction::Put { file, no_test } => {
            let template = match read_template(&file) {
                Ok(template) => template,
                Err(err) => {
                    let err = AdminError::Invalid {
                        field: "file".into(),
                        message: format!("{err:#}"),
                    };
                    return Ok(failed(json_output, &err));
                }
            };
            match admin.save(template, !no_test).await {
                Ok(saved) => print(json_output, &saved, || describe_saved(&saved)),
                Err(err) => return Ok(failed(json_output, &err)),
            }
        }
        TemplateAction::Get { id } => match admin.get(&id).await {
            Ok(template) => print(json_output, &template, || {
                serde_json::to_string_pretty(&template).expect("serialisable")
            }),
            Err(err) => return Ok(failed(json_output, &err)),
        },
        TemplateAction::List => {
            let mut all = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = match admin.list(after.as_deref(), 1000).await {
                    Ok(page) => page,
                    Err(err) => return Ok(failed(json_output, &err)),
                };
                all.extend(page.templates);
                match page.next_after {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            print(json_output, &all, || {
                let mut lines = vec![format!("{:<32} {:<7} {:<7} URL", "ID", "METHOD", "AUTH")];
                for t in &all {
                    let auth = match t.auth {
                        Auth::None => "none",
                        Auth::Basic { .. } => "basic",
                        Auth::OAuth2(_) => "oauth2",
                    };
                    lines.push(format!(
                        "{:<32} {:<7} {:<7} {}",
                        t.id,
                        t.method.as_str(),
                        auth,
                        t.url
                    ));
                }
                lines.push(format!("{} templates", all.len()));
                lines.join("\n")
            });
        }
        TemplateAction::Delete { id } => match admin.delete(&id).await {
            Ok(true) => print(json_output, &json!({"deleted": id}), || format!("deleted {id}")),
            Ok(false) => return Ok(failed(json_output, &AdminError::NotFound(id))),
            Err(err) => return Ok(failed(json_output, &err)),
        },
        TemplateAction::Import { dir, no_test } => return import(admin, &dir, no_test, json_output).await,
    }
    Ok(ExitCode::SUCCESS)
}

async fn import(admin: &Admin, dir: &Path, no_test: bool, json_output: bool) -> anyhow::Result<ExitCode> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the folder {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("json" | "yaml" | "yml")
                )
        })
        .collect();
    files.sort();
    let mut results = Vec::new();
    let mut failures = 0;
    for file in files {
        let outcome = match read_template(&file) {
            Ok(template) => admin.save(template, !no_test).await.map_err(|e| e.to_string()),
            Err(err) => Err(format!("{err:#}")),
        };
        let name = file.display().to_string();
        match outcome {
            Ok(saved) => {
                if !json_output {
                    println!("{name}: {}", describe_saved(&saved));
                }
                results.push(json!({"file": name, "id": saved.template.id, "ok": true, "test": saved.test}));
            }
            Err(error) => {
                failures += 1;
                if !json_output {
                    println!("{name}: FAILED: {error}");
                }
                results.push(json!({"file": name, "ok": false, "error": error}));
            }
        }
    }
    if json_output {
        println!("{}", serde_json::Value::Array(results));
    } else {
        eprintln!("{} imported, {failures} failed", results.len() - failures);
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn token(admin: &Admin, action: TokenAction, json_output: bool) -> anyhow::Result<ExitCode> {
    let TokenAction::Generate { id, reveal } = action;
    match admin.generate_token(&id, reveal).await {
        Ok(token) => print(json_output, &token, || {
            format!(
                "token_type    {}\nscopes        {}\nexpires_at    {} (in {} s)\naccess_token  {}",
                token.token_type,
                token.scopes.join(" "),
                token.expires_at.to_rfc3339(),
                token.expires_in,
                token.access_token
            )
        }),
        Err(err) => return Ok(failed(json_output, &err)),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn stats(admin: &Admin, target_id: i64, json_output: bool) -> anyhow::Result<ExitCode> {
    match admin.stats(target_id).await {
        Ok(stats) => print(json_output, &stats, || {
            format!(
                "campaign       {}\nstatus         {}\nrequests       {}\ndelivered      {}\nretried        {}\ndead_lettered  {}\nlast_error     {}\nlast_error_at  {}",
                stats.target_id,
                if stats.dispatch_failed {
                    "Webhook Dispatch Failed"
                } else {
                    "ok"
                },
                stats.requests,
                stats.delivered,
                stats.retried,
                stats.dead_lettered,
                stats.last_error.as_deref().unwrap_or("-"),
                stats.last_error_at.as_deref().unwrap_or("-"),
            )
        }),
        Err(err) => return Ok(failed(json_output, &err)),
    }
    Ok(ExitCode::SUCCESS)
}

/// `dlq inspect` and `dlq replay`: the dead letters, one line (or JSON object) each, then
/// a count on stderr.
pub async fn dlq(config: &Config, action: DlqAction, json_output: bool) -> anyhow::Result<()> {
    let (filter, replaying) = match &action {
        DlqAction::Inspect { filter } => (filter, false),
        DlqAction::Replay { filter, dry_run } => (filter, !dry_run),
    };
    let letters = replay::read(config, filter)?;
    for letter in &letters {
        if json_output {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_redis_password_is_masked() {
        assert_eq!(
            redis_url_masked("redis://app:hunter2@redis.internal:6380/2"),
            "redis://app:****@redis.internal:6380/2"
        );
        assert_eq!(
            redis_url_masked("rediss://:hunter2@r:6379"),
            "rediss://:****@r:6379"
        );
        assert_eq!(
            redis_url_masked("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }

    #[test]
    fn the_printed_configuration_has_the_keys_of_the_defaults_file() {
        fn keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
            for (key, value) in table {
                let path = format!("{prefix}{key}");
                match value {
                    toml::Value::Table(inner) if key != "properties" => keys(inner, &format!("{path}."), out),
                    _ => out.push(path),
                }
            }
        }
        let config = Config::load_from(Vec::new()).unwrap();
        let printed: toml::Table =
            toml::from_str(&toml::to_string(&ConfigView::new(&config)).unwrap()).unwrap();
        let defaults: toml::Table = toml::from_str(crate::config::DEFAULTS).unwrap();
        let (mut printed_keys, mut default_keys) = (Vec::new(), Vec::new());
        keys(&printed, "", &mut printed_keys);
        keys(&defaults, "", &mut default_keys);
        printed_keys.sort();
        default_keys.sort();
        assert_eq!(printed_keys, default_keys);
        assert_eq!(
            printed, defaults,
            "with nothing set, `config` prints the defaults"
        );
    }
}
