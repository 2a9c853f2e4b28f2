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
//!
//! The hash is FNV-1a, written out here (six lines): it must give every replica and every
//! version the same bucket, which `std`'s hasher does not promise.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::RedisResult;

use super::{AttemptPage, Filter, LogError, LoggedAttempt, Outcome};
use crate::config::DeliveryLogConfig;
use crate::redis_link::RedisConn;

const BUCKETS: u64 = 8192;
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

/// FNV-1a, 64 bits.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The 32-bit hash an event's references carry.
pub fn event_hash(event_id: &str) -> u32 {
    fnv(event_id) as u32
}

/// The 12-bit hash an entry names its host by: small enough to cost 3 bytes an entry; a
/// campaign sends to a handful of hosts, so two of its hosts share one with a chance of
/// about 1 in 1,000 (the later one is then shown for both).
fn host_hash(host: &str) -> u32 {
    (fnv(host) % 4096) as u32
}

/// The reference list an event's attempts are found through.
pub fn bucket_of(event_id: &str) -> u64 {
    (fnv(event_id) >> 32) % BUCKETS
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A reference: hash, campaign, entry id (ms, sequence).
fn reference(event_id: &str, target_id: i64, entry: &str) -> Option<Vec<u8>> {
    let (ms, seq) = entry.split_once('-')?;
    let (ms, seq) = (ms.parse::<u64>().ok()?, seq.parse::<u32>().ok()?);
    let mut out = Vec::with_capacity(22);
    out.extend_from_slice(&event_hash(event_id).to_be_bytes());
    out.extend_from_slice(&target_id.to_be_bytes());
    out.extend_from_slice(&ms.to_be_bytes()[2..]);
    out.extend_from_slice(&seq.to_be_bytes());
    Some(out)
}

/// (hash, campaign, entry id) of a reference.
fn parse_reference(bytes: &[u8]) -> Option<(u32, i64, String)> {
    if bytes.len() != 22 {
        return None;
    }
    let hash = u32::from_be_bytes(bytes[0..4].try_into().ok()?);
    let target = i64::from_be_bytes(bytes[4..12].try_into().ok()?);
    let mut ms = [0u8; 8];
    ms[2..].copy_from_slice(&bytes[12..18]);
    let seq = u32::from_be_bytes(bytes[18..22].try_into().ok()?);
    Some((hash, target, format!("{}-{seq}", u64::from_be_bytes(ms))))
}

/// The outcome and what followed, in one value: `d`, `r` + the tier, `x` + the reason.
fn outcome_code(attempt: &LoggedAttempt) -> String {
    let code = match attempt.outcome {
        Outcome::Delivered => "d",
        Outcome::Retrying => "r",
        Outcome::DeadLettered => "x",
    };
    format!("{code}{}", attempt.next.as_deref().unwrap_or_default())
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

/// `ms-seq`, as stream ids are written.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The 16 bytes of a UUID written as 36 lower-case characters with hyphens; `None` for any
/// other id (kept as text: it must come back exactly as it was).
fn uuid_bytes(id: &str) -> Option<[u8; 16]> {
    let bytes = id.as_bytes();
    if bytes.len() != 36 || [8, 13, 18, 23].iter().any(|&i| bytes[i] != b'-') {
        return None;
    }
    let hex: Vec<u8> = bytes.iter().copied().filter(|&b| b != b'-').collect();
    if hex.len() != 32 || !hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

fn uuid_text(bytes: &[u8]) -> Option<String> {
    if bytes.len() != 16 {
        return None;
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// An attempt from its entry (`fields`: names and values in turn); `None` for an entry
/// this version cannot read.
fn decode(
    id: &str,
    target_id: i64,
    fields: &[Vec<u8>],
    hosts: &BTreeMap<String, String>,
) -> Option<LoggedAttempt> {
    let mut map = BTreeMap::new();
    for pair in fields.chunks(2) {
        if let [name, value] = pair {
            map.insert(name.as_slice(), value.as_slice());
        }
    }
    let text = |name: &str| -> Option<String> {
        map.get(name.as_bytes())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .filter(|v| !v.is_empty())
    };
    let number = |name: &str| -> Option<u64> { text(name)?.parse().ok() };
    let event_id = match map.get(b"u".as_slice()) {
        Some(bytes) => uuid_text(bytes)?,
        None => text("e")?,
    };
    let template_id = text("t").unwrap_or_default();
    let code = text("o")?;
    let mut chars = code.chars();
    let outcome = match chars.next()? {
        'd' => Outcome::Delivered,
        'r' => Outcome::Retrying,
        'x' => Outcome::DeadLettered,
        _ => return None,
    };
    let next = chars.as_str();
    let said = text("s");
    let status = said.as_deref().and_then(|s| s.parse::<u16>().ok());
    Some(LoggedAttempt {
        id: id.to_string(),
        host: text("h").and_then(|h| hosts.get(&h).cloned()).unwrap_or_default(),
        event_id,
        target_id,
        template_id,
        chunk: number("c").unwrap_or_default() as u32,
        attempt: number("n").unwrap_or(1) as u32,
        at_ms: parse_id(id).map_or(0, |(ms, _)| ms),
        error: said.filter(|_| status.is_none()),
        status,
        latency_ms: number("l").unwrap_or_default(),
        tier: number("r").unwrap_or_default() as u32,
        outcome,
        next: Some(next.to_string()).filter(|n| !n.is_empty()),
        answer: text("a"),
        request_bytes: number("b").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_uuids_read_back_as_written() {
        let r = reference("e-1", -42, "1765150000123-7").unwrap();
        assert_eq!(r.len(), 22);
        assert_eq!(
            parse_reference(&r),
            Some((event_hash("e-1"), -42, "1765150000123-7".to_string()))
        );
        let id = "3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
        assert_eq!(uuid_text(&uuid_bytes(id).unwrap()).as_deref(), Some(id));
        for other in [
            "3F2B1C4D-5E6F-4A7B-8C9D-0E1F2A3B4C5D",
            "e-1",
            "3f2b1c4d5e6f4a7b8c9d0e1f2a3b4c5d0000",
        ] {
            assert_eq!(uuid_bytes(other), None, "{other} stays text");
        }
    }

    #[test]
    fn buckets_are_the_same_on_every_replica_and_version() {
        // FNV-1a of "a", fixed by its definition: a change here moves every event's bucket.
        assert_eq!(fnv("a"), 0xaf63_dc4c_8601_ec8c);
        assert!(bucket_of("any event") < BUCKETS);
    }
}
