//! The admin operations from a terminal (docs/api.md): `template put|get|list|delete|import`,
//! `token generate`, `stats`, `campaign pause|resume|cancel`, `attempts event|campaign`, `dlq inspect|replay` and `config`. They talk to Redis (and, for
//! tokens and test requests, to the destinations) directly, with the same configuration as
//! `run`. Human-readable output by default, JSON with `--json` (a failure is then a [`Problem`]
//! on stdout). Exit codes: 0 done, 1 the operation failed (not found, a test request that did
//! not get 200 OK, an invalid template), 2 bad configuration or usage.

mod attempts;
mod dlq;
mod show_config;

pub use attempts::{AttemptsAction, attempts};
pub use dlq::{DlqAction, dlq};
pub use show_config::print_config;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use super::problem::Problem;
use super::{Admin, AdminError, SaveMode, Saved};
use crate::auth::Auth;
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
    /// As `put`, but never replaces: a template with the same id is left as it is and the
    /// command fails with `already_exists`.
    Create {
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
pub enum CampaignAction {
    /// Hold the campaign's deliveries, unsent, until it is resumed (every replica within a
    /// second; other campaigns keep flowing).
    Pause {
        /// The campaign's targetId.
        #[arg(allow_negative_numbers = true)]
        target_id: i64,
    },
    /// Send what is held and what comes; `cancelled` dead letters can then be replayed.
    Resume {
        #[arg(allow_negative_numbers = true)]
        target_id: i64,
    },
    /// Dead-letter what is held, and every delivery that arrives until a resume, as
    /// `cancelled`.
    Cancel {
        #[arg(allow_negative_numbers = true)]
        target_id: i64,
    },
}

/// Pauses, resumes or cancels a campaign; prints its state.
pub async fn campaign(admin: &Admin, action: CampaignAction, json_output: bool) -> anyhow::Result<ExitCode> {
    use crate::campaigns::Command;
    let (target_id, command) = match action {
        CampaignAction::Pause { target_id } => (target_id, Command::Pause),
        CampaignAction::Resume { target_id } => (target_id, Command::Resume),
        CampaignAction::Cancel { target_id } => (target_id, Command::Cancel),
    };
    match admin.control_campaign(target_id, command).await {
        Ok(state) => print(json_output, &state, || {
            let since = state
                .since
                .as_deref()
                .map(|s| format!(" since {s}"))
                .unwrap_or_default();
            format!("campaign {} is {}{since}", state.target_id, state.state)
        }),
        Err(err) => return Ok(failed(json_output, &err)),
    }
    Ok(ExitCode::SUCCESS)
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

/// `template put` and `template create`: reads, tests and saves one template file.
async fn save(
    admin: &Admin,
    file: &Path,
    no_test: bool,
    mode: SaveMode,
    json_output: bool,
) -> anyhow::Result<ExitCode> {
    let template = match read_template(file) {
        Ok(template) => template,
        Err(err) => {
            let err = AdminError::invalid("file", format!("{err:#}"));
            return Ok(failed(json_output, &err));
        }
    };
    Ok(match admin.save(template, !no_test, mode).await {
        Ok(saved) => {
            print(json_output, &saved, || describe_saved(&saved));
            ExitCode::SUCCESS
        }
        Err(err) => failed(json_output, &err),
    })
}

pub async fn template(admin: &Admin, action: TemplateAction, json_output: bool) -> anyhow::Result<ExitCode> {
    match action {
        TemplateAction::Put { file, no_test } => {
            return save(admin, &file, no_test, SaveMode::CreateOrReplace, json_output).await;
        }
        TemplateAction::Create { file, no_test } => {
            return save(admin, &file, no_test, SaveMode::Create, json_output).await;
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
            Ok(template) => admin
                .save(template, !no_test, SaveMode::CreateOrReplace)
                .await
                .map_err(|e| e.to_string()),
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
                "campaign       {}\nstate          {}\nstatus         {}\nrequests       {}\ndelivered      {}\nretried        {}\ndead_lettered  {}\nheld           {}\ncancelled      {}\nlast_error     {}\nlast_error_at  {}",
                stats.target_id,
                stats.state,
                if stats.dispatch_failed {
                    "Webhook Dispatch Failed"
                } else {
                    "ok"
                },
                stats.requests,
                stats.delivered,
                stats.retried,
                stats.dead_lettered,
                stats.held,
                stats.cancelled,
                stats.last_error.as_deref().unwrap_or("-"),
                stats.last_error_at.as_deref().unwrap_or("-"),
            )
        }),
        Err(err) => return Ok(failed(json_output, &err)),
    }
    Ok(ExitCode::SUCCESS)
}
