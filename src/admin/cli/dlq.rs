//! `dlq inspect|replay`: the dead-letter topic from a terminal, read and replayed through
//! [`replay`] with the service's own configuration.

use super::super::replay;
use crate::config::Config;

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
