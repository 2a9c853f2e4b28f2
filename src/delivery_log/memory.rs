//! The delivery log kept in the process (the demo, which has no Redis): the newest attempts,
//! as many as the configured bound allows up to 100,000, read the way the Redis log is.

use std::collections::VecDeque;

use parking_lot::Mutex;

use super::{AttemptPage, Filter, LogError, LoggedAttempt};
use crate::config::DeliveryLogConfig;

const MOST: usize = 100_000;

pub(super) struct MemoryLog {
    attempts: Mutex<(VecDeque<LoggedAttempt>, u64)>,
    bound: usize,
}

impl MemoryLog {
    pub(super) fn new(config: &DeliveryLogConfig) -> MemoryLog {
        MemoryLog {
            attempts: Mutex::new((VecDeque::new(), 0)),
            bound: config.per_campaign.saturating_mul(config.campaigns).min(MOST),
        }
    }

    /// Appends `batch`, each with an id like the Redis log's (`ms-seq`), dropping the oldest
    /// beyond the bound.
    pub(super) fn write(&self, batch: Vec<LoggedAttempt>) {
        let mut guard = self.attempts.lock();
        let (attempts, seq) = &mut *guard;
        for mut attempt in batch {
            *seq += 1;
            attempt.id = format!("{}-{seq}.0", attempt.at_ms);
            attempts.push_back(attempt);
        }
        while attempts.len() > self.bound {
            attempts.pop_front();
        }
    }

    pub(super) fn event(&self, event_id: &str) -> Vec<LoggedAttempt> {
        let guard = self.attempts.lock();
        guard
            .0
            .iter()
            .filter(|a| a.event_id == event_id)
            .cloned()
            .collect()
    }

    pub(super) fn campaign(
        &self,
        target_id: i64,
        filter: Filter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<AttemptPage, LogError> {
        let guard = self.attempts.lock();
        let newest_first = guard.0.iter().rev().filter(|a| a.target_id == target_id);
        let mut after_cursor: Box<dyn Iterator<Item = &LoggedAttempt>> = match cursor {
            None => Box::new(newest_first),
            Some(cursor) => {
                if !guard.0.iter().any(|a| a.id == cursor) {
                    return Err(LogError::Cursor(format!("{cursor:?} is not in the log")));
                }
                Box::new(newest_first.skip_while(move |a| a.id != cursor).skip(1))
            }
        };
        let attempts: Vec<LoggedAttempt> = after_cursor
            .by_ref()
            .filter(|a| filter.keeps(a))
            .take(limit)
            .cloned()
            .collect();
        let more = attempts.len() == limit && after_cursor.any(|a| filter.keeps(a));
        Ok(AttemptPage {
            next_cursor: more.then(|| attempts.last().map(|a| a.id.clone())).flatten(),
            attempts,
        })
    }
}
