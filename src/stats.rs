//! Per-campaign stats in Redis: `{prefix}stats:{targetId}` is a hash of `requests`,
//! `delivered`, `retried`, `dead_lettered`, `recovered` (dead letters replayed and then
//! delivered), `last_error` and `last_error_at` (RFC 3339), the "Webhook Dispatch Failed"
//! view, which clears once every dead letter was recovered. Counts are aggregated in memory
//! and written once a second in one pipeline, never one round trip per delivery; each
//! write sets the key's expiry (`stats_ttl`) again; counts that could not be written (Redis
//! down) are kept for the next flush. [`read`] is the other side: what `stats` and
//! `GET /v1/campaigns/{targetId}/stats` show.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;

use crate::redis_link::RedisConn;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::warn;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub delivered: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub recovered: u64,
    /// Deliveries held while the campaign is paused, less those released (may be negative
    /// in a batch: another replica may have held what this one released).
    pub held: i64,
    /// Deliveries dead-lettered because the campaign was cancelled.
    pub cancelled: u64,
    /// The latest error and when it happened (ms since the epoch).
    pub last_error: Option<(String, u64)>,
}

impl Counts {
    fn merge(&mut self, newer: Counts) {
        self.requests += newer.requests;
        self.delivered += newer.delivered;
        self.retried += newer.retried;
        self.dead_lettered += newer.dead_lettered;
        self.recovered += newer.recovered;
        self.held += newer.held;
        self.cancelled += newer.cancelled;
        if newer.last_error.is_some() {
            self.last_error = newer.last_error;
        }
    }
}

/// A campaign's delivery counts: the "Webhook Dispatch Failed" view.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CampaignStats {
    #[serde(rename = "targetId")]
    pub target_id: i64,
    pub requests: u64,
    pub delivered: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    /// Dead-lettered deliveries replayed and then delivered.
    pub recovered: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// `true` while a dead-lettered delivery of the campaign has not been replayed and
    /// delivered: "Webhook Dispatch Failed".
    pub dispatch_failed: bool,
    /// `active`, `paused` or `cancelled` (see `POST /v1/campaigns/{id}/pause`).
    #[serde(default = "active")]
    pub state: String,
    /// When the campaign was paused or cancelled (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_since: Option<String>,
    /// Deliveries held now because the campaign is paused.
    #[serde(default)]
    pub held: u64,
    /// Deliveries dead-lettered as `cancelled` because the campaign was cancelled (not
    /// counted in `dead_lettered`: a cancelled campaign is not a failed one).
    #[serde(default)]
    pub cancelled: u64,
    /// When its stats were last written (RFC 3339; in the campaign list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at: Option<String>,
}

fn active() -> String {
    "active".into()
}

/// The Redis hash of a campaign's stats.
fn key(prefix: &str, target_id: i64) -> String {
    format!("{prefix}stats:{target_id}")
}

impl CampaignStats {
    /// The stats of `counts`, as [`read`] gives them back from Redis.
    fn of(target_id: i64, counts: &Counts) -> CampaignStats {
        let (last_error, last_error_at) = match &counts.last_error {
            Some((error, at_ms)) => (Some(error.clone()), Some(rfc3339(*at_ms))),
            None => (None, None),
        };
        CampaignStats {
            target_id,
            requests: counts.requests,
            delivered: counts.delivered,
            retried: counts.retried,
            dead_lettered: counts.dead_lettered,
            recovered: counts.recovered,
            last_error,
            last_error_at,
            dispatch_failed: counts.dead_lettered > counts.recovered,
            state: active(),
            state_since: None,
            held: counts.held.max(0) as u64,
            cancelled: counts.cancelled,
            last_at: None,
        }
    }
}

pub(crate) fn rfc3339(at_ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(at_ms as i64)
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}

/// The sorted set of the campaigns whose stats were written, scored by when (ms).
fn index_key(prefix: &str) -> String {
    format!("{prefix}campaigns")
}

/// Campaigns the index keeps at most: the most recently written (targetIds come from
/// outside, so the index is bounded by count as well as by the stats' lifetime).
const INDEXED_CAMPAIGNS: isize = 10_000;

/// What became of a replayed dead letter's delivery: written beside the letter's replay
/// mark, `{prefix}replay-outcome:{topic}:{partition}:{offset}` = `"{outcome} {ms}"`, kept
/// as long as the mark ([`REPLAY_MARK_TTL_SECONDS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayOutcome {
    Delivered,
    /// Its retries ran out again, or it was refused again.
    DeadLettered,
}

impl ReplayOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplayOutcome::Delivered => "delivered",
            ReplayOutcome::DeadLettered => "dead_lettered",
        }
    }
}

/// How long a replayed letter stays marked, and its outcome kept: as long as a
/// dead-letter topic keeps records.
pub const REPLAY_MARK_TTL_SECONDS: u64 = 30 * 86_400;

/// Replay outcomes held for the next write: a replay sends at most a page of 5,000 letters,
/// so this holds two pages; past it an outcome is dropped (the campaign's `recovered`
/// count still has it) and the letter shows as replayed with no outcome.
const PENDING_OUTCOMES: usize = 10_000;

/// The longest letter reference kept (`{topic}:{partition}:{offset}`; a topic name has at
/// most 249 characters): a longer one came from a record nobody replayed, and is ignored.
const LETTER_REF_MAX: usize = 300;

/// Writes each replay outcome beside its letter's mark, kept as long.
fn write_outcomes(pipe: &mut redis::Pipeline, prefix: &str, outcomes: &[(String, ReplayOutcome, u64)]) {
    for (letter, outcome, at_ms) in outcomes {
        pipe.cmd("SET")
            .arg(replay_outcome_key(prefix, letter))
            .arg(format!("{} {at_ms}", outcome.as_str()))
            .arg("EX")
            .arg(REPLAY_MARK_TTL_SECONDS)
            .ignore();
    }
}

/// The Redis key holding what became of a replayed letter (`letter`:
/// `{topic}:{partition}:{offset}`).
pub fn replay_outcome_key(prefix: &str, letter: &str) -> String {
    format!("{prefix}replay-outcome:{letter}")
}

/// The `limit` campaigns written to most recently, those with a failure first.
pub async fn recent(
    conn: &RedisConn,
    prefix: &str,
    limit: usize,
) -> Result<Vec<CampaignStats>, redis::RedisError> {
    let newest: Vec<(i64, f64)> = conn
        .clone()
        .zrevrange_withscores(index_key(prefix), 0, limit.saturating_sub(1) as isize)
        .await?;
    let mut campaigns = Vec::with_capacity(newest.len());
    for (target_id, at_ms) in newest {
        let mut stats = read(conn, prefix, target_id).await?;
        stats.last_at = Some(rfc3339(at_ms as u64));
        campaigns.push(stats);
    }
    // Stable: within each group, the most recent first.
    campaigns.sort_by_key(|c| !c.dispatch_failed);
    Ok(campaigns)
}

/// A campaign's stats as every replica wrote them (zeros when nothing was sent).
pub async fn read(
    conn: &RedisConn,
    prefix: &str,
    target_id: i64,
) -> Result<CampaignStats, redis::RedisError> {
    let fields: HashMap<String, String> = conn.clone().hgetall(key(prefix, target_id)).await?;
    let count = |name: &str| {
        fields
            .get(name)
            .and_then(|v| v.parse::<i64>().ok())
            .map_or(0, |n| n.max(0) as u64)
    };
    let mut stats = CampaignStats::of(
        target_id,
        &Counts {
            requests: count("requests"),
            delivered: count("delivered"),
            retried: count("retried"),
            dead_lettered: count("dead_lettered"),
            recovered: count("recovered"),
            held: count("held") as i64,
            cancelled: count("cancelled"),
            last_error: None,
        },
    );
    stats.last_error = fields.get("last_error").cloned();
    stats.last_error_at = fields.get("last_error_at").cloned();
    Ok(stats)
}

/// What happened to one delivery attempt, for its campaign's stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Request,
    Delivered,
    Retried,
    DeadLettered,
    /// A replayed dead letter was delivered.
    Recovered,
    /// Parked on the hold topic while the campaign is paused.
    Held,
    /// Taken off the hold topic again (sent, held again or dead-lettered).
    Released,
    /// Dead-lettered because the campaign is cancelled.
    Cancelled,
}

/// Where the counts go.
enum Sink {
    /// Written to Redis under the prefix once a second, each key expiring after the
    /// duration; `pending` holds what is not yet.
    Redis(RedisConn, String, Duration),
    /// Kept in this process (the demo, which has no Redis): `pending` holds the totals.
    Memory,
}

pub struct Stats {
    /// With Redis: the counts not yet written. In memory: the totals.
    pending: Mutex<crate::FastMap<i64, Counts>>,
    /// Replay outcomes not yet written (letter, outcome, ms since the epoch).
    outcomes: Mutex<Vec<(String, ReplayOutcome, u64)>>,
    sink: Sink,
}

impl Stats {
    /// Stats written to Redis under `prefix`, each campaign's key expiring `ttl` after its
    /// last write.
    pub fn redis(conn: RedisConn, prefix: &str, ttl: Duration) -> Stats {
        Stats {
            pending: Mutex::default(),
            outcomes: Mutex::default(),
            sink: Sink::Redis(conn, prefix.to_string(), ttl),
        }
    }

    /// Stats kept in this process only (the demo, which has no Redis): [`Stats::local`]
    /// reads them.
    pub fn in_memory() -> Stats {
        Stats {
            pending: Mutex::default(),
            outcomes: Mutex::default(),
            sink: Sink::Memory,
        }
    }

    /// Up to `limit` campaigns when they are kept in this process (failed first, then by
    /// targetId, newest first), `None` when they go to Redis.
    pub fn local_list(&self, limit: usize) -> Option<Vec<CampaignStats>> {
        let Sink::Memory = self.sink else {
            return None;
        };
        let mut campaigns: Vec<CampaignStats> = self
            .pending
            .lock()
            .iter()
            .map(|(target_id, counts)| CampaignStats::of(*target_id, counts))
            .collect();
        campaigns.sort_by_key(|c| (!c.dispatch_failed, std::cmp::Reverse(c.target_id)));
        campaigns.truncate(limit);
        Some(campaigns)
    }

    /// A campaign's stats when they are kept in this process, `None` when they go to Redis.
    pub fn local(&self, target_id: i64) -> Option<CampaignStats> {
        match self.sink {
            Sink::Memory => {
                let pending = self.pending.lock();
                let counts = pending.get(&target_id).cloned().unwrap_or_default();
                Some(CampaignStats::of(target_id, &counts))
            }
            Sink::Redis(..) => None,
        }
    }

    pub fn record(&self, target_id: i64, event: Event) {
        let mut pending = self.pending.lock();
        let counts = pending.entry(target_id).or_default();
        match event {
            Event::Request => counts.requests += 1,
            Event::Delivered => counts.delivered += 1,
            Event::Retried => counts.retried += 1,
            Event::DeadLettered => counts.dead_lettered += 1,
            Event::Recovered => counts.recovered += 1,
            Event::Held => counts.held += 1,
            Event::Released => counts.held -= 1,
            Event::Cancelled => counts.cancelled += 1,
        }
    }

    pub fn error(&self, target_id: i64, error: &str, at_ms: u64) {
        let mut pending = self.pending.lock();
        pending.entry(target_id).or_default().last_error = Some((error.to_string(), at_ms));
    }

    /// What became of the delivery replayed from dead letter `letter`
    /// (`{topic}:{partition}:{offset}`), for the dead-letter list. Written with the next
    /// flush; dropped when stats stay in this process (the demo has no replay marks).
    pub fn replay_outcome(&self, letter: &str, outcome: ReplayOutcome) {
        if matches!(self.sink, Sink::Memory) || letter.len() > LETTER_REF_MAX {
            return;
        }
        let mut outcomes = self.outcomes.lock();
        if outcomes.len() < PENDING_OUTCOMES {
            let at_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
            outcomes.push((letter.to_string(), outcome, at_ms));
        }
    }

    /// Writes what accumulated; on failure keeps it for the next flush.
    pub async fn flush(&self) {
        let Sink::Redis(conn, prefix, ttl) = &self.sink else {
            return;
        };
        let batch = std::mem::take(&mut *self.pending.lock());
        let outcomes = std::mem::take(&mut *self.outcomes.lock());
        if batch.is_empty() && outcomes.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        write_outcomes(&mut pipe, prefix, &outcomes);
        let index = index_key(prefix);
        let now_ms = chrono::Utc::now().timestamp_millis();
        for (target, counts) in &batch {
            pipe.zadd(&index, *target, now_ms).ignore();
            let key = key(prefix, *target);
            for (field, n) in [
                ("requests", counts.requests),
                ("delivered", counts.delivered),
                ("retried", counts.retried),
                ("dead_lettered", counts.dead_lettered),
                ("recovered", counts.recovered),
                ("cancelled", counts.cancelled),
            ] {
                if n > 0 {
                    pipe.hincr(&key, field, n).ignore();
                }
            }
            if counts.held != 0 {
                pipe.hincr(&key, "held", counts.held).ignore();
            }
            if let Some((error, at_ms)) = &counts.last_error {
                pipe.hset(&key, "last_error", error).ignore();
                pipe.hset(&key, "last_error_at", rfc3339(*at_ms)).ignore();
            }
            pipe.expire(&key, ttl.as_secs().max(1) as i64).ignore();
        }
        // The index forgets campaigns whose stats expired, and keeps the newest only.
        let oldest_kept = now_ms - ttl.as_millis() as i64;
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(oldest_kept)
            .ignore();
        pipe.cmd("ZREMRANGEBYRANK")
            .arg(&index)
            .arg(0)
            .arg(-(INDEXED_CAMPAIGNS + 1))
            .ignore();
        pipe.expire(&index, ttl.as_secs().max(1) as i64).ignore();
        if let Err(err) = pipe.query_async::<()>(&mut conn.clone()).await {
            if let Some(suppressed) = crate::telemetry::limited("stats-write") {
                warn!(error = %err, campaigns = batch.len(), suppressed,
                      "cannot write campaign stats; kept for the next try");
            }
            self.keep_for_next_flush(batch, outcomes);
        }
    }

    /// Puts back what a failed flush took, merged with what came meanwhile.
    fn keep_for_next_flush(
        &self,
        batch: crate::FastMap<i64, Counts>,
        outcomes: Vec<(String, ReplayOutcome, u64)>,
    ) {
        let mut kept = self.outcomes.lock();
        let room = PENDING_OUTCOMES.saturating_sub(kept.len());
        kept.extend(outcomes.into_iter().take(room));
        let mut pending = self.pending.lock();
        for (target, counts) in batch {
            let mut older = counts;
            if let Some(newer) = pending.remove(&target) {
                older.merge(newer);
            }
            pending.insert(target, older);
        }
    }

    /// Flushes every second until `stop`, then once more.
    pub async fn run(&self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => self.flush().await,
            }
        }
        self.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_counts_and_keeps_the_newest_error() {
        let mut older = Counts {
            requests: 2,
            delivered: 1,
            last_error: Some(("HTTP 500".into(), 1)),
            ..Default::default()
        };
        older.merge(Counts {
            requests: 1,
            dead_lettered: 1,
            last_error: Some(("HTTP 400".into(), 2)),
            ..Default::default()
        });
        assert_eq!((older.requests, older.delivered, older.dead_lettered), (3, 1, 1));
        assert_eq!(older.last_error, Some(("HTTP 400".into(), 2)));
        older.merge(Counts::default());
        assert_eq!(
            older.last_error,
            Some(("HTTP 400".into(), 2)),
            "no error keeps the last"
        );
    }

    #[test]
    fn stats_kept_in_memory_read_back_as_the_api_shows_them() {
        let stats = Stats::in_memory();
        assert_eq!(
            stats.local(42).map(|s| s.requests),
            Some(0),
            "zeros before anything"
        );
        stats.record(42, Event::Request);
        stats.record(42, Event::DeadLettered);
        stats.error(42, "HTTP 400", 1_700_000_000_000);
        stats.record(7, Event::Delivered);
        let campaign = stats.local(42).expect("kept in memory");
        assert_eq!((campaign.requests, campaign.dead_lettered), (1, 1));
        assert!(campaign.dispatch_failed);
        assert_eq!(campaign.last_error.as_deref(), Some("HTTP 400"));
        assert_eq!(
            campaign.last_error_at.as_deref(),
            Some("2023-11-14T22:13:20+00:00")
        );
        assert!(!stats.local(7).unwrap().dispatch_failed);
        let listed: Vec<i64> = stats
            .local_list(10)
            .unwrap()
            .iter()
            .map(|c| c.target_id)
            .collect();
        assert_eq!(listed, [42, 7], "failed first");
    }

    /// targetIds come from outside: the campaign index keeps the newest 10,000 only. Needs a
    /// Redis (scripts/test starts one; REDIS_URL).
    #[tokio::test]
    async fn the_campaign_index_is_bounded_whatever_the_events_say() {
        let conn = crate::redis_link::test_conn().await;
        let prefix = format!("stats-index-test-{}:", std::process::id());
        let stats = Stats::redis(conn.clone(), &prefix, Duration::from_secs(60));
        for target in 0..(INDEXED_CAMPAIGNS as i64 + 500) {
            stats.record(target, Event::Request);
        }
        stats.record(-1, Event::DeadLettered);
        stats.flush().await;
        let indexed: usize = conn.clone().zcard(index_key(&prefix)).await.unwrap();
        assert_eq!(indexed, INDEXED_CAMPAIGNS as usize);
        let recent = recent(&conn, &prefix, 3).await.unwrap();
        assert_eq!(recent.len(), 3);
        assert!(recent.iter().all(|c| c.last_at.is_some()));
        let mut keys: Vec<String> = conn.clone().keys(format!("{prefix}*")).await.unwrap();
        keys.push(index_key(&prefix));
        let _: () = conn.clone().del(keys).await.unwrap();
    }
}
