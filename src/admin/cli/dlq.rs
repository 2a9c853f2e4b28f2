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
/// a count on stderr. Read (and replayed) a page at a time, so memory stays bounded however
/// many match.
pub async fn dlq(config: &Config, action: DlqAction, json_output: bool) -> anyhow::Result<()> {
    let (filter, replaying) = match &action {
        DlqAction::Inspect { filter } => (filter, false),
        DlqAction::Replay { filter, dry_run } => (filter, !dry_run),
    };
    let mut page = replay::Page {
        cursor: None,
        limit: PAGE,
    };
    let mut total = 0;
    loop {
        let scan = replay::read(config, filter, &page)?;
        for letter in &scan.letters {
            if json_output {
                println!("{}", serde_json::to_string(letter)?);
            } else {
                println!("{}", replay::describe(letter));
            }
        }
        if replaying {
            let letters: Vec<&replay::Letter> = scan.letters.iter().collect();
            replay::replay(config, &letters).await?;
        }
        total += scan.letters.len();
        match scan.next {
            Some(next) => page.cursor = Some(next),
            None => break,
        }
    }
    match action {
        DlqAction::Inspect { .. } => eprintln!("{total} dead letters"),
        DlqAction::Replay { .. } if !replaying => {
            eprintln!("{total} dead letters would be replayed (dry run: nothing sent)")
        }
        DlqAction::Replay { .. } => eprintln!("{total} dead letters replayed"),
    }
    Ok(())
}

/// Dead letters read (and replayed) at a time.
const PAGE: usize = 1000;
