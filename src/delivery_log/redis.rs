//! The delivery log in Redis, bounded by count and age whatever the events say:
//!
//! - `{prefix}log:c:{targetId}`: a stream per campaign. Each flush adds one entry per
//!   campaign (per 256 attempts), its attempts packed (see `encoding`); the stream is
//!   trimmed to `max_age` every flush and, once its campaign's count passes `per_campaign`,
//!   back to about four fifths of it; the key expires `max_age` after
//!   its last write. An attempt's id (the API's cursor) is its entry's id and its place in
//!   it. Streams need Redis 6.2 or later (`XTRIM MINID`, exclusive ranges).
//! - `{prefix}log:s:{targetId}`: the strings the campaign's entries name by key (templates,
//!   hosts, error classes, what followed).
//! - `{prefix}log:n`: each campaign's attempt count, for that trimming.
//! - `{prefix}log:campaigns`: the campaigns with a log, by last write; past `campaigns` of
//!   them, or past `max_age`, a campaign's log is deleted.
//! - `{prefix}log:ev:{list}`: 1,024 lists of 22-byte references, 832 per list (851,968 in
//!   all): how an event's attempts are found without knowing its campaign. A reference
//!   pushed out by 832 newer attempts of events in the same list is no longer found by id
//!   (its campaign's log still shows the attempt).
//!
//! What an attempt costs in memory is measured in docs/how-it-works.md, "Delivery log".

mod encoding;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use redis::{RedisResult, Value};

use encoding::{
    PER_ENTRY, by_campaign, now_ms, pack, parse_id, parse_reference, reference, string_key, unpack_entries,
};
pub use encoding::{bucket_of, event_hash};

use super::{AttemptPage, Filter, LogError, LoggedAttempt};
use crate::config::DeliveryLogConfig;
use crate::redis_link::RedisConn;

const BUCKET_LEN: isize = 832;
/// Entries read per round trip when a campaign's page is read.
const SCAN_BATCH: usize = 20;
/// Attempts read at most for one page, whatever the filter keeps.
const SCAN_MAX: usize = 5_000;

/// Whether a written batch's references and trimming were written too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Indexed {
    Yes,
    /// The entries are in, their references (and the trimming) wait for the next flush.
    No,
}

pub(super) struct RedisLog {
    conn: RedisConn,
    prefix: String,
    max_age: Duration,
    per_campaign: usize,
    campaigns: usize,
}

impl RedisLog {
    pub(super) fn new(conn: RedisConn, prefix: &str, config: &DeliveryLogConfig) -> RedisLog {
        RedisLog {
            conn,
            prefix: prefix.to_string(),
            max_age: config.max_age,
            per_campaign: config.per_campaign,
            campaigns: config.campaigns,
        }
    }

    fn stream(&self, target_id: i64) -> String {
        format!("{}log:c:{target_id}", self.prefix)
    }

    fn strings(&self, target_id: i64) -> String {
        format!("{}log:s:{target_id}", self.prefix)
    }

    fn counts(&self) -> String {
        format!("{}log:n", self.prefix)
    }

    fn bucket(&self, bucket: u64) -> String {
        format!("{}log:ev:{bucket}", self.prefix)
    }

    fn index(&self) -> String {
        format!("{}log:campaigns", self.prefix)
    }

    /// Writes `batch`: the entries, then the references to them and the trimming. What
    /// fails after the entries were added is not an error: written again, they would be
    /// there twice.
    pub(super) async fn write(&self, batch: &[LoggedAttempt]) -> RedisResult<Indexed> {
        let age_s = self.max_age.as_secs().max(1) as i64;
        let now = now_ms();
        let campaigns = by_campaign(batch);
        let mut pipe = redis::pipe();
        let mut entries: Vec<&[&LoggedAttempt]> = Vec::new();
        for (target, attempts) in &campaigns {
            let stream = self.stream(*target);
            let mut names = BTreeMap::new();
            for chunk in attempts.chunks(PER_ENTRY) {
                let (value, strings) = pack(chunk);
                names.extend(strings.into_iter().map(|s| (string_key(s), s)));
                pipe.cmd("XADD").arg(&stream).arg("*").arg("v").arg(value);
                entries.push(chunk);
            }
            let map = self.strings(*target);
            let pairs: Vec<(u64, &str)> = names.into_iter().collect();
            pipe.hset_multiple(&map, &pairs).ignore();
            pipe.expire(&map, age_s).ignore();
            pipe.expire(&stream, age_s).ignore();
            pipe.zadd(self.index(), *target, now).ignore();
        }
        let ids: Vec<String> = pipe.query_async(&mut self.conn.clone()).await?;
        let oldest = now.saturating_sub(self.max_age.as_millis() as u64);
        if let Err(err) = self
            .index_and_trim(&campaigns, &entries, &ids, oldest, age_s)
            .await
        {
            tracing::warn!(error = %err, "delivery log: entries written without their references or trimming");
            return Ok(Indexed::No);
        }
        Ok(Indexed::Yes)
    }

    /// The references to the attempts of `entries` (added as `ids`), the trimming by age and
    /// count, and the cap on campaigns.
    async fn index_and_trim(
        &self,
        campaigns: &BTreeMap<i64, Vec<&LoggedAttempt>>,
        entries: &[&[&LoggedAttempt]],
        ids: &[String],
        oldest: u64,
        age_s: i64,
    ) -> RedisResult<()> {
        let mut pipe = redis::pipe();
        self.push_references(&mut pipe, entries, ids, age_s);
        let counts = self.counts();
        for (target, attempts) in campaigns {
            let stream = self.stream(*target);
            pipe.cmd("XTRIM")
                .arg(&stream)
                .arg("MINID")
                .arg("~")
                .arg(oldest)
                .ignore();
            pipe.hincr(&counts, *target, attempts.len());
            pipe.cmd("XLEN").arg(&stream);
        }
        pipe.expire(&counts, age_s).ignore();
        let index = self.index();
        pipe.expire(&index, age_s).ignore();
        pipe.cmd("ZRANGEBYSCORE").arg(&index).arg("-inf").arg(oldest);
        pipe.zrange(&index, 0, -(self.campaigns as isize) - 1);
        let mut answers: Vec<Value> = pipe.query_async(&mut self.conn.clone()).await?;
        let over: Vec<i64> = redis::from_redis_value(answers.pop().unwrap_or(Value::Nil))?;
        let aged: Vec<i64> = redis::from_redis_value(answers.pop().unwrap_or(Value::Nil))?;
        let mut pipe = redis::pipe();
        for ((target, _), pair) in campaigns.iter().zip(answers.chunks(2)) {
            if let [count, len] = pair {
                let count: usize = redis::from_redis_value(count.clone())?;
                let len: usize = redis::from_redis_value(len.clone())?;
                self.trim_to_count(&mut pipe, *target, count, len);
            }
        }
        let evicted: BTreeSet<i64> = aged.into_iter().chain(over).collect();
        for target in &evicted {
            pipe.del(self.stream(*target)).ignore();
            pipe.del(self.strings(*target)).ignore();
            pipe.hdel(&counts, *target).ignore();
            pipe.zrem(&index, *target).ignore();
        }
        if pipe.is_empty() {
            // Nothing over its count and nothing to evict: Redis refuses an empty pipeline.
            return Ok(());
        }
        pipe.query_async::<()>(&mut self.conn.clone()).await
    }

    /// Adds to `pipe` the references to the attempts of `entries` (added as `ids`), pushed
    /// per list: fixed-size and sorted by list, no allocation per attempt.
    fn push_references(
        &self,
        pipe: &mut redis::Pipeline,
        entries: &[&[&LoggedAttempt]],
        ids: &[String],
        age_s: i64,
    ) {
        let mut references: Vec<(u64, [u8; 22])> = Vec::with_capacity(ids.len() * PER_ENTRY);
        for (attempts, id) in entries.iter().zip(ids) {
            let Some(entry) = parse_id(id) else { continue };
            for (index, attempt) in attempts.iter().enumerate() {
                if let Some(reference) = reference(&attempt.event_id, attempt.target_id, entry, index) {
                    references.push((bucket_of(&attempt.event_id), reference));
                }
            }
        }
        references.sort_unstable_by_key(|(bucket, _)| *bucket);
        for same in references.chunk_by(|a, b| a.0 == b.0) {
            let key = self.bucket(same[0].0);
            let push = pipe.cmd("LPUSH").arg(&key);
            for (_, reference) in same {
                push.arg(&reference[..]);
            }
            push.ignore();
            pipe.ltrim(&key, 0, BUCKET_LEN - 1).ignore();
            pipe.expire(&key, age_s).ignore();
        }
    }

    /// Adds to `pipe` the trimming of campaign `target_id` back to four fifths of
    /// `per_campaign` attempts once it holds `count` in `len` entries, over `per_campaign`.
    fn trim_to_count(&self, pipe: &mut redis::Pipeline, target_id: i64, count: usize, len: usize) {
        if count <= self.per_campaign {
            return;
        }
        let target_count = self.per_campaign * 4 / 5;
        let keep = (len * target_count / count).max(1);
        // Exactly: `~` trims whole nodes of 100 entries, far more than a campaign's count
        // at 256 attempts an entry.
        pipe.cmd("XTRIM")
            .arg(self.stream(target_id))
            .arg("MAXLEN")
            .arg(keep)
            .ignore();
        pipe.hset(self.counts(), target_id, target_count).ignore();
    }

    /// Every attempt of `event_id` still referenced, oldest first.
    pub(super) async fn event(&self, event_id: &str) -> Result<Vec<LoggedAttempt>, LogError> {
        let mut conn = self.conn.clone();
        let references: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(self.bucket(bucket_of(event_id)))
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await?;
        let hash = event_hash(event_id);
        let entries: BTreeSet<(i64, String)> = references
            .iter()
            .filter_map(|r| parse_reference(r))
            .filter(|(h, ..)| *h == hash)
            .map(|(_, target, id, _)| (target, id))
            .collect();
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (target, id) in &entries {
            pipe.cmd("XRANGE").arg(self.stream(*target)).arg(id).arg(id);
        }
        let replies: Vec<Vec<(String, Vec<Vec<u8>>)>> = pipe.query_async(&mut conn).await?;
        let mut names_of: BTreeMap<i64, BTreeMap<u64, String>> = BTreeMap::new();
        for (target, _) in &entries {
            if !names_of.contains_key(target) {
                names_of.insert(*target, self.names(*target).await?);
            }
        }
        let mut attempts: Vec<LoggedAttempt> = entries
            .iter()
            .zip(replies)
            .flat_map(|((target, _), found)| unpack_entries(*target, found, &names_of[target]))
            .flat_map(|(_, attempts)| attempts)
            .filter(|a| a.event_id == event_id)
            .collect();
        attempts.sort_by_key(|a| (a.at_ms, a.chunk, a.attempt));
        Ok(attempts)
    }

    /// A page of campaign `target_id`'s attempts, newest first (see `DeliveryLog::campaign`).
    pub(super) async fn campaign(
        &self,
        target_id: i64,
        filter: Filter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<AttemptPage, LogError> {
        let cursor =
            match cursor {
                None => None,
                Some(text) => Some(parse_cursor(text).ok_or_else(|| {
                    LogError::Cursor(format!("{text:?} is not an attempt id (ms-seq.index)"))
                })?),
            };
        let names = self.names(target_id).await?;
        let mut page = Page {
            filter,
            limit,
            attempts: Vec::new(),
            scanned: 0,
        };
        // Entries from the cursor's own (inclusive: its older attempts come first), then
        // older ones.
        let mut from = cursor.as_ref().map(|(entry, _)| entry.clone());
        let mut skip_from = cursor;
        loop {
            let entries: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XREVRANGE")
                .arg(self.stream(target_id))
                .arg(from.as_deref().unwrap_or("+"))
                .arg("-")
                .arg("COUNT")
                .arg(SCAN_BATCH)
                .query_async(&mut self.conn.clone())
                .await?;
            let at_end = entries.len() < SCAN_BATCH;
            for (id, mut in_entry) in unpack_entries(target_id, entries, &names) {
                from = Some(format!("({id}"));
                if let Some((entry, index)) = skip_from.take()
                    && entry == id
                {
                    in_entry.truncate(index);
                }
                if page.take(in_entry) {
                    return Ok(page.done(None));
                }
            }
            if at_end {
                return Ok(page.done(Some(None)));
            }
            if page.scanned >= SCAN_MAX {
                // A filter that keeps few: the page ends where the scan did, after the
                // whole of the last entry read.
                let after = from.map(|f| format!("{}.0", f.trim_start_matches('(')));
                return Ok(page.done(Some(after)));
            }
        }
    }
}

impl RedisLog {
    /// Campaign `target_id`'s string map.
    async fn names(&self, target_id: i64) -> Result<BTreeMap<u64, String>, LogError> {
        Ok(redis::cmd("HGETALL")
            .arg(self.strings(target_id))
            .query_async(&mut self.conn.clone())
            .await?)
    }
}

/// A campaign's page as it fills.
struct Page {
    filter: Filter,
    limit: usize,
    attempts: Vec<LoggedAttempt>,
    scanned: usize,
}

impl Page {
    /// Takes what the filter keeps of one entry's attempts, newest first; `true` once full.
    fn take(&mut self, in_entry: Vec<LoggedAttempt>) -> bool {
        for attempt in in_entry.into_iter().rev() {
            self.scanned += 1;
            if self.filter.keeps(&attempt) {
                self.attempts.push(attempt);
                if self.attempts.len() == self.limit {
                    return true;
                }
            }
        }
        false
    }

    /// The page, going on after its last attempt (`None`), or after `next`.
    fn done(self, next: Option<Option<String>>) -> AttemptPage {
        let next_cursor = match next {
            None => self.attempts.last().map(|a| a.id.clone()),
            Some(next) => next,
        };
        AttemptPage {
            attempts: self.attempts,
            next_cursor,
        }
    }
}

/// `ms-seq.index`: an entry id (not 0-0, which no entry has) and a place in it.
fn parse_cursor(text: &str) -> Option<(String, usize)> {
    let (entry, index) = text.rsplit_once('.')?;
    let id = parse_id(entry)?;
    if id == (0, 0) {
        return None;
    }
    Some((entry.to_string(), index.parse().ok()?))
}
