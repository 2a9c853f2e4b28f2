//! The delivery log in Redis, bounded by count and age whatever the events say:
//!
//! - `{prefix}log:c:{targetId}`: a stream per campaign, one entry per attempt, trimmed to
//!   `per_campaign` entries (approximately, as Redis trims whole nodes) and to `max_age`;
//!   the key expires `max_age` after its last write. The entry's id is its place in the
//!   campaign (the API's cursor) and its time: when it was written, a quarter second after
//!   the attempt at most unless Redis was refusing writes. Streams need Redis 6.2 or later
//!   (`XTRIM MINID`, exclusive ranges).
//! - `{prefix}log:campaigns`: the campaigns with a log, by last write; past `campaigns` of
//!   them, the least recently written one's log is deleted.
//! - `{prefix}log:h:{targetId}`: the destination hosts the campaign's attempts went to, by
//!   a 12-bit hash that each entry carries (a host is a few dozen bytes, and a campaign
//!   sends to few).
//! - `{prefix}log:ev:{bucket}`: 8,192 lists of 22-byte references (a 32-bit hash of the
//!   event id, the campaign, the entry id), 104 per list (851,968 in all): how an event's
//!   attempts are found without knowing its campaign. A reference pushed out by 104 newer
//!   attempts of events in the same list is no longer found by id (its campaign's log still
//!   shows the attempt).
//!
//! Entries keep the same fields in the same order, so Redis stores their names once per node
//! (an event id that is a UUID is kept as its 16 bytes, under `u` instead of `e`). What an
//! attempt costs in memory is measured in docs/how-it-works.md, "Delivery log".

mod encoding;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use redis::RedisResult;

pub use encoding::{bucket_of, event_hash};
use encoding::{decode, host_hash, now_ms, outcome_code, parse_id, parse_reference, reference, uuid_bytes};

use super::{AttemptPage, Filter, LogError, LoggedAttempt};
use crate::config::DeliveryLogConfig;
use crate::redis_link::RedisConn;

const BUCKET_LEN: isize = 104;
/// Entries read per round trip when a campaign's page is filtered, and at most per page.
const SCAN_BATCH: usize = 500;
const SCAN_MAX: usize = 5_000;

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

    fn hosts(&self, target_id: i64) -> String {
        format!("{}log:h:{target_id}", self.prefix)
    }

    fn bucket(&self, bucket: u64) -> String {
        format!("{}log:ev:{bucket}", self.prefix)
    }

    fn index(&self) -> String {
        format!("{}log:campaigns", self.prefix)
    }

    /// Writes `batch`: the entries, then the references to them. What fails after the
    /// entries were added is not an error: written again, they would be there twice.
    pub(super) async fn write(&self, batch: &[LoggedAttempt]) -> RedisResult<()> {
        let age_s = self.max_age.as_secs().max(1) as i64;
        let now = now_ms();
        let oldest = now.saturating_sub(self.max_age.as_millis() as u64);
        let mut pipe = redis::pipe();
        for attempt in batch {
            pipe.add_command(self.entry(attempt));
        }
        let mut touched = BTreeSet::new();
        let mut hosts = BTreeSet::new();
        for attempt in batch {
            touched.insert(attempt.target_id);
            hosts.insert((attempt.target_id, attempt.host.as_str()));
        }
        for (target, host) in &hosts {
            pipe.hset(self.hosts(*target), host_hash(host), *host).ignore();
        }
        for target in &touched {
            pipe.expire(self.stream(*target), age_s).ignore();
            pipe.expire(self.hosts(*target), age_s).ignore();
            pipe.zadd(self.index(), *target, now).ignore();
        }
        let ids: Vec<String> = pipe.query_async(&mut self.conn.clone()).await?;
        if let Err(err) = self.index_and_trim(batch, &ids, &touched, oldest, age_s).await {
            tracing::warn!(error = %err, "delivery log: entries written without their references or trimming");
        }
        Ok(())
    }

    /// The references to the entries `ids` of `batch`, the trimming by age, and the cap on
    /// campaigns.
    async fn index_and_trim(
        &self,
        batch: &[LoggedAttempt],
        ids: &[String],
        touched: &BTreeSet<i64>,
        oldest: u64,
        age_s: i64,
    ) -> RedisResult<()> {
        let mut buckets: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
        for (attempt, id) in batch.iter().zip(ids) {
            if let Some(reference) = reference(&attempt.event_id, attempt.target_id, id) {
                buckets
                    .entry(bucket_of(&attempt.event_id))
                    .or_default()
                    .push(reference);
            }
        }
        let mut pipe = redis::pipe();
        for (bucket, references) in buckets {
            let key = self.bucket(bucket);
            pipe.lpush(&key, references).ignore();
            pipe.ltrim(&key, 0, BUCKET_LEN - 1).ignore();
            pipe.expire(&key, age_s).ignore();
        }
        for target in touched {
            pipe.cmd("XTRIM")
                .arg(self.stream(*target))
                .arg("MINID")
                .arg("~")
                .arg(oldest)
                .ignore();
        }
        let index = self.index();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(oldest)
            .ignore();
        pipe.expire(&index, age_s).ignore();
        // Campaigns beyond the newest `campaigns`: their logs go.
        pipe.zrange(&index, 0, -(self.campaigns as isize) - 1);
        let (evicted,): (Vec<i64>,) = pipe.query_async(&mut self.conn.clone()).await?;
        if !evicted.is_empty() {
            let mut pipe = redis::pipe();
            for target in &evicted {
                pipe.del(self.stream(*target)).ignore();
                pipe.del(self.hosts(*target)).ignore();
            }
            pipe.zrem(&index, &evicted).ignore();
            pipe.query_async::<()>(&mut self.conn.clone()).await?;
        }
        Ok(())
    }

    /// `XADD` of one attempt, its fields always the same and in the same order.
    fn entry(&self, a: &LoggedAttempt) -> redis::Cmd {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.stream(a.target_id))
            .arg("MAXLEN")
            .arg("~")
            .arg(self.per_campaign)
            .arg("*");
        match uuid_bytes(&a.event_id) {
            Some(bytes) => cmd.arg("u").arg(&bytes[..]),
            None => cmd.arg("e").arg(&a.event_id),
        };
        cmd.arg("t")
            .arg(&a.template_id)
            .arg("h")
            .arg(host_hash(&a.host))
            .arg("c")
            .arg(a.chunk)
            .arg("n")
            .arg(a.attempt)
            // The status, or the error class when there was no answer.
            .arg("s")
            .arg(match (a.status, &a.error) {
                (Some(status), _) => status.to_string(),
                (None, error) => error.clone().unwrap_or_default(),
            })
            .arg("l")
            .arg(a.latency_ms)
            .arg("r")
            .arg(a.tier)
            .arg("o")
            .arg(outcome_code(a))
            .arg("a")
            .arg(a.answer.as_deref().unwrap_or_default())
            .arg("b")
            .arg(a.request_bytes);
        cmd
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
        let found: BTreeSet<(i64, String)> = references
            .iter()
            .filter_map(|r| parse_reference(r))
            .filter(|(h, ..)| *h == hash)
            .map(|(_, target, id)| (target, id))
            .collect();
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (target, id) in &found {
            pipe.cmd("XRANGE").arg(self.stream(*target)).arg(id).arg(id);
        }
        let replies: Vec<Vec<(String, Vec<Vec<u8>>)>> = pipe.query_async(&mut conn).await?;
        let mut attempts = Vec::new();
        let mut hosts_of: BTreeMap<i64, BTreeMap<String, String>> = BTreeMap::new();
        for ((target, _), entries) in found.iter().zip(replies) {
            if !hosts_of.contains_key(target) {
                hosts_of.insert(*target, self.host_map(*target).await?);
            }
            let hosts = &hosts_of[target];
            attempts.extend(
                entries
                    .into_iter()
                    .filter_map(|(id, fields)| decode(&id, *target, &fields, hosts))
                    .filter(|a| a.event_id == event_id),
            );
        }
        attempts.sort_by_key(|a| (a.at_ms, a.chunk, a.attempt));
        Ok(attempts)
    }

    async fn host_map(&self, target_id: i64) -> Result<BTreeMap<String, String>, LogError> {
        Ok(redis::cmd("HGETALL")
            .arg(self.hosts(target_id))
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// A page of campaign `target_id`'s attempts, newest first (see `DeliveryLog::campaign`).
    pub(super) async fn campaign(
        &self,
        target_id: i64,
        filter: Filter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<AttemptPage, LogError> {
        if let Some(cursor) = cursor
            && parse_id(cursor).is_none_or(|id| id == (0, 0))
        {
            return Err(LogError::Cursor(format!(
                "{cursor:?} is not an attempt id (ms-seq)"
            )));
        }
        let stream = self.stream(target_id);
        let hosts = self.host_map(target_id).await?;
        let mut conn = self.conn.clone();
        let mut before = cursor.map(|c| format!("({c}"));
        let mut attempts = Vec::new();
        let mut scanned = 0;
        loop {
            let entries: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XREVRANGE")
                .arg(&stream)
                .arg(before.as_deref().unwrap_or("+"))
                .arg("-")
                .arg("COUNT")
                .arg(SCAN_BATCH)
                .query_async(&mut conn)
                .await?;
            let at_end = entries.len() < SCAN_BATCH;
            for (id, fields) in entries {
                scanned += 1;
                before = Some(format!("({id}"));
                if let Some(attempt) = decode(&id, target_id, &fields, &hosts)
                    && filter.keeps(&attempt)
                {
                    attempts.push(attempt);
                    if attempts.len() == limit {
                        return Ok(AttemptPage {
                            next_cursor: Some(id),
                            attempts,
                        });
                    }
                }
            }
            if at_end {
                return Ok(AttemptPage {
                    attempts,
                    next_cursor: None,
                });
            }
            if scanned >= SCAN_MAX {
                // A filter that keeps few: the page ends where the scan did.
                return Ok(AttemptPage {
                    attempts,
                    next_cursor: before.map(|b| b.trim_start_matches('(').to_string()),
                });
            }
        }
    }
}
