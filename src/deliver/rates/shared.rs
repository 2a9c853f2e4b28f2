//! Rates shared through Redis (see [`super`]'s doc): the lease script, the fallback while
//! Redis does not answer, and the replicas' heartbeats the fallback divides by.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::SharedLimits;

/// A lease covers this much of the rate's time, and reaches at most [`LEASE_AHEAD`] ahead.
const LEASE_SPAN: Duration = Duration::from_millis(100);
const LEASE_AHEAD: Duration = Duration::from_secs(1);
const LEASE_MAX: u64 = 100;
/// How long a lease call may take before Redis counts as down, and for how long then.
const LEASE_TIMEOUT: Duration = Duration::from_millis(200);
const FALLBACK_FOR: Duration = Duration::from_secs(1);
/// Heartbeats: how often, and after how long without one a replica no longer counts.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
const REPLICA_GONE_AFTER: Duration = Duration::from_secs(15);

/// Where rates are shared, and what this replica knows of it.
pub(super) struct Shared {
    pub(super) limits: SharedLimits,
    /// Replicas alive when last heard (at least 1).
    pub(super) replicas: AtomicUsize,
    /// Redis is taken as down until then (leases are not tried).
    down_until: Mutex<Option<Instant>>,
    script: redis::Script,
}

/// What the lease script answers: how far ahead the block starts and how many moments it
/// holds (0: none, come back after the wait).
pub(super) type Lease = (u64, u64);

const LEASE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local start = math.max(tat, now)
local ahead = tonumber(ARGV[3])
if start - now > ahead then return {start - now - ahead, 0} end
local n = tonumber(ARGV[2])
redis.call('SET', KEYS[1], string.format('%.0f', start + n * tonumber(ARGV[1])), 'PX', ARGV[4])
return {start - now, n}
";

impl Shared {
    pub(super) fn new(limits: SharedLimits) -> Shared {
        Shared {
            limits,
            replicas: AtomicUsize::new(1),
            down_until: Mutex::default(),
            script: redis::Script::new(LEASE_SCRIPT),
        }
    }

    pub(super) fn up(&self, now: Instant) -> bool {
        self.down_until.lock().is_none_or(|until| now >= until)
    }

    pub(super) fn replicas(&self) -> f64 {
        self.replicas.load(Ordering::Relaxed).max(1) as f64
    }

    /// Leases moments of `template`'s schedule at `rate`; `None` when Redis did not answer.
    pub(super) async fn lease(&self, template: &str, rate: f64, interval: Duration) -> Option<Lease> {
        let want = (rate * LEASE_SPAN.as_secs_f64())
            .ceil()
            .clamp(1.0, LEASE_MAX as f64) as u64;
        let key = format!("{}rate:{template}", self.limits.prefix);
        let mut call = self.script.key(key);
        call.arg(interval.as_micros() as u64)
            .arg(want)
            .arg(LEASE_AHEAD.as_micros() as u64)
            .arg((interval.as_millis() as u64).saturating_mul(want).max(1000) + 10_000);
        let mut conn = self.limits.conn.clone();
        match tokio::time::timeout(LEASE_TIMEOUT, call.invoke_async::<Lease>(&mut conn)).await {
            Ok(Ok(lease)) => Some(lease),
            Ok(Err(err)) => {
                self.went_down(&err.to_string());
                None
            }
            Err(_) => {
                self.went_down("no answer within 200 ms");
                None
            }
        }
    }

    fn went_down(&self, why: &str) {
        *self.down_until.lock() = Some(Instant::now() + FALLBACK_FOR);
        if let Some(suppressed) = crate::telemetry::limited("rate-fallback") {
            warn!(
                error = why,
                replicas = self.replicas.load(Ordering::Relaxed),
                suppressed,
                "shared rate limits unavailable; each replica sends at the rate divided by the replicas it last knew"
            );
        }
    }

    /// Writes this replica's heartbeat and reads how many are alive, every
    /// [`HEARTBEAT_EVERY`] until `stop`.
    pub(super) async fn heartbeat(&self, stop: CancellationToken) {
        let shared = self;
        let id = format!("{}-{}", std::process::id(), crate::park::now_ms());
        let key = format!("{}replicas", shared.limits.prefix);
        let mut every = tokio::time::interval(HEARTBEAT_EVERY);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = every.tick() => {}
            }
            let now = crate::park::now_ms();
            let gone = now.saturating_sub(REPLICA_GONE_AFTER.as_millis() as u64);
            let mut pipe = redis::pipe();
            pipe.zadd(&key, &id, now)
                .ignore()
                .cmd("ZREMRANGEBYSCORE")
                .arg(&key)
                .arg("-inf")
                .arg(gone)
                .ignore()
                .zcard(&key)
                .expire(&key, 60)
                .ignore();
            if let Ok((alive,)) = pipe
                .query_async::<(usize,)>(&mut shared.limits.conn.clone())
                .await
            {
                shared.replicas.store(alive.max(1), Ordering::Relaxed);
            }
        }
        let _: Result<(), _> = redis::cmd("ZREM")
            .arg(&key)
            .arg(&id)
            .query_async(&mut shared.limits.conn.clone())
            .await;
    }
}
