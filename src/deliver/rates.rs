//! A template's request rate (docs/how-it-works.md, "Rate limits"): its
//! `rate_limit_per_sec`, held across every replica, and lowered while its destination
//! answers 429.
//!
//! **Shared through Redis.** Requests are spaced `1 / rate` apart on one schedule for the
//! whole deployment, kept in Redis as the next free moment (GCRA's "theoretical arrival
//! time", `{prefix}rate:{template}`, on the Redis server's clock). A replica leases a block
//! of consecutive moments at once, a tenth of a second's worth (at most 100), with one
//! script call, and hands them to its waiting requests locally: Redis sees one call per
//! block, not per delivery, and the replicas' blocks never overlap, so together they send at
//! the rate. A lease reaches at most a second ahead, so no replica hoards moments.
//!
//! **When Redis does not answer** (200 ms), each replica falls back for a second at a time to
//! the rate divided by the number of replicas alive when it last heard (each writes a
//! heartbeat every 5 s, `{prefix}replicas`; event loops are not replicas), says so once in
//! the log budget, and shows it in `webhook_rate_limit_fallback`.
//!
//! **Adapting to the destination.** A 429, or a 503 with `Retry-After`, lowers the
//! template's effective rate in this replica. Answers are watched a second at a time. A
//! second with a 429 in it multiplies the rate by the share of its requests the destination
//! accepted (half at least), but never below what the destination accepted in the last full
//! second; a template not limited yet gets what was accepted lately. A second without one,
//! in which the lowered rate held requests back, raises it by a twentieth of the level it was
//! lowered to, up to the configured rate (a template without one stops adapting once it is
//! ten times that level; any template, after five minutes of holding nothing back). Answers
//! to requests sent before the last change are not counted. A 429 never opens the circuit
//! breaker, nor counts against `max_retries` (see the pipeline). The effective rate is shown
//! in `GET /v1/templates/{id}`; `webhook_rate_adaptations_total` counts the changes.
//!
//! The spacing itself is a few lines of arithmetic on one schedule per template: the
//! `governor` crate this replaced keeps its own schedule, which cannot take moments leased
//! from another one.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::AttemptResult;
use crate::metrics::Metrics;
use crate::redis_link::RedisConn;

/// An answer of a template's destination, for [`Rates::observe`]: what it was, when its
/// request was sent, and what the destination accepted lately.
pub struct Answer<'a> {
    pub result: &'a AttemptResult,
    pub sent: std::time::Instant,
    pub accepted: &'a Accepted,
}

/// Where rates are shared: the service's Redis and key prefix.
#[derive(Clone)]
pub struct SharedLimits {
    pub conn: RedisConn,
    pub prefix: String,
}

/// The longest spacing a rate can impose (the slowest rate templates accept).
const MAX_RATE_PERIOD: Duration = Duration::from_secs(1000);
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
/// How long adaptation watches answers before it decides: quotas are mostly per second, so
/// what a destination accepted over a second is what it takes.
const WINDOW: Duration = Duration::from_secs(1);
/// The lowest effective rate adaptation goes to.
const MIN_ADAPTED: f64 = 0.5;
/// Entries kept before idle ones are dropped (template ids come from events).
const SWEEP_AT: usize = 1024;

/// Answers a template's destination accepted in the current second and the one before:
/// what a first 429 lowers the template's rate to. Counted on every accepted answer with a
/// few relaxed atomics (races only blur the count).
#[derive(Default)]
pub struct Accepted {
    second: AtomicU64,
    this: AtomicU64,
    last: AtomicU64,
}

impl Accepted {
    /// One answer accepted in second `now_s` (since the epoch).
    pub fn record(&self, now_s: u64) {
        let second = self.second.load(Ordering::Relaxed);
        if second != now_s
            && self
                .second
                .compare_exchange(second, now_s, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let counted = self.this.swap(0, Ordering::Relaxed);
            let last = if now_s == second + 1 { counted } else { 0 };
            self.last.store(last, Ordering::Relaxed);
        }
        self.this.fetch_add(1, Ordering::Relaxed);
    }

    /// Answers accepted per second lately, as of second `now_s`: the most of the last two
    /// seconds counted (0: none within them).
    pub fn rate(&self, now_s: u64) -> f64 {
        let second = self.second.load(Ordering::Relaxed);
        let this = self.this.load(Ordering::Relaxed);
        let accepted = if second == now_s || second + 1 == now_s {
            this.max(self.last.load(Ordering::Relaxed))
        } else {
            0
        };
        accepted as f64
    }
}

/// Every template's rate in this process.
pub struct Rates {
    templates: Mutex<crate::FastMap<String, Arc<TemplateRate>>>,
    shared: Option<Shared>,
    /// Templates whose rate is lowered now: while none is, templates without a configured
    /// rate skip every lookup.
    adapted: AtomicUsize,
    metrics: Option<Arc<Metrics>>,
}

struct Shared {
    limits: SharedLimits,
    /// Replicas alive when last heard (at least 1).
    replicas: AtomicUsize,
    /// Redis is taken as down until then (leases are not tried).
    down_until: Mutex<Option<Instant>>,
    script: redis::Script,
}

/// One template's schedule and adaptation.
struct TemplateRate {
    configured: Option<f64>,
    slots: tokio::sync::Mutex<Slots>,
    adapt: Mutex<Option<Adapt>>,
}

#[derive(Default)]
struct Slots {
    /// The next leased moment, and how many are left.
    lease_next: Option<Instant>,
    lease_left: u64,
    lease_interval: Duration,
    /// The next free moment of the local schedules: the fallback, and the adapted rate.
    fallback_next: Option<Instant>,
    adapted_next: Option<Instant>,
}

#[derive(Clone)]
struct Adapt {
    effective: f64,
    /// Where raising stops: the configured rate, or ten times the level (then adaptation ends).
    ceiling: f64,
    /// The rate it was last lowered to.
    level: f64,
    /// The second being watched: when it began, answers accepted in it, whether a 429 came
    /// in it, and whether a request waited for the adapted rate in it (it held the template
    /// back).
    window_start: std::time::Instant,
    accepted: u64,
    refused: u64,
    waited: bool,
    /// Seconds with traffic in a row in which the adapted rate held nothing back.
    idle: u32,
    /// When the rate last changed: answers to requests sent before it say nothing of it.
    changed_at: std::time::Instant,
}

/// Seconds of traffic the adapted rate holds nothing back before adaptation ends.
const IDLE_TO_END: u32 = 300;

/// `1 / rate`, within the bounds a template's rate may have; `None` for a rate too high to
/// space (no limit at all).
fn interval(rate: f64) -> Option<Duration> {
    let period = Duration::try_from_secs_f64(1.0 / rate).unwrap_or(MAX_RATE_PERIOD);
    (!period.is_zero()).then_some(period.min(MAX_RATE_PERIOD))
}

impl Slots {
    /// The next leased moment, if a lease has one that is not stale.
    fn leased(&mut self, now: Instant) -> Option<Instant> {
        let next = self.lease_next?;
        if self.lease_left == 0 || next + self.lease_interval < now {
            self.lease_left = 0;
            return None;
        }
        self.lease_left -= 1;
        self.lease_next = Some(next + self.lease_interval);
        Some(next)
    }

    /// The next moment of a local schedule at `rate`.
    fn local(next: &mut Option<Instant>, after: Instant, rate: f64) -> Instant {
        let Some(interval) = interval(rate) else {
            return after;
        };
        let at = next.map_or(after, |n| n.max(after));
        *next = Some(at + interval);
        at
    }
}

/// What the lease script answers: how far ahead the block starts and how many moments it
/// holds (0: none, come back after the wait).
type Lease = (u64, u64);

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
    fn up(&self, now: Instant) -> bool {
        self.down_until.lock().is_none_or(|until| now >= until)
    }

    fn replicas(&self) -> f64 {
        self.replicas.load(Ordering::Relaxed).max(1) as f64
    }

    /// Leases moments of `template`'s schedule at `rate`; `None` when Redis did not answer.
    async fn lease(&self, template: &str, rate: f64, interval: Duration) -> Option<Lease> {
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
}

impl Rates {
    /// Rates of this process alone (no Redis: the demo), or shared through `shared`.
    pub fn new(shared: Option<SharedLimits>, metrics: Option<Arc<Metrics>>) -> Rates {
        Rates {
            templates: Mutex::default(),
            shared: shared.map(|limits| Shared {
                limits,
                replicas: AtomicUsize::new(1),
                down_until: Mutex::default(),
                script: redis::Script::new(LEASE_SCRIPT),
            }),
            adapted: AtomicUsize::new(0),
            metrics,
        }
    }

    /// Waits until `template` may send one request (`configured`: its `rate_limit_per_sec`).
    /// `None` when `closed` came first.
    pub async fn wait(
        &self,
        template: &str,
        configured: Option<f64>,
        closed: &CancellationToken,
    ) -> Option<()> {
        if configured.is_none() && self.adapted.load(Ordering::Relaxed) == 0 {
            return Some(());
        }
        let Some(rate) = self.entry(template, configured) else {
            return Some(());
        };
        tokio::select! {
            _ = closed.cancelled() => None,
            () = self.take_turn(&rate, template) => Some(()),
        }
    }

    /// Whether `template` may have to wait for its rate (a cheap check for the caller).
    pub fn may_wait(&self, configured: Option<f64>) -> bool {
        configured.is_some() || self.adapted.load(Ordering::Relaxed) > 0
    }

    /// The template's entry: `None` when nothing limits it.
    fn entry(&self, template: &str, configured: Option<f64>) -> Option<Arc<TemplateRate>> {
        let mut templates = self.templates.lock();
        if let Some(rate) = templates.get(template)
            && rate.configured == configured
        {
            return (configured.is_some() || rate.adapt.lock().is_some()).then(|| rate.clone());
        }
        configured?;
        if templates.len() >= SWEEP_AT {
            templates.retain(|_, rate| Arc::strong_count(rate) > 1 || rate.adapt.lock().is_some());
        }
        let rate = Arc::new(TemplateRate::new(configured));
        templates.insert(template.to_string(), rate.clone());
        Some(rate)
    }

    /// Waits for this request's moment: the template's next leased (or fallback) moment,
    /// then its adapted rate's. Waiters take their turn one after the other (the lock is
    /// first come, first served) and each is given its moment only when its turn comes, so a
    /// rate that changes meanwhile applies to the very next request, not after a queue of
    /// moments handed out before.
    async fn take_turn(&self, rate: &TemplateRate, template: &str) {
        let mut slots = rate.slots.lock().await;
        let mut at = Instant::now();
        if let Some(configured) = rate.configured {
            at = self.configured_moment(&mut slots, template, configured).await;
        }
        let effective = rate.adapt.lock().as_ref().map(|a| a.effective);
        if let Some(effective) = effective {
            let unadapted = at;
            at = Slots::local(&mut slots.adapted_next, at, effective);
            if at > unadapted
                && let Some(adapt) = rate.adapt.lock().as_mut()
            {
                adapt.waited = true;
            }
        }
        tokio::time::sleep_until(at).await;
    }

    async fn configured_moment(&self, slots: &mut Slots, template: &str, configured: f64) -> Instant {
        let Some(shared) = &self.shared else {
            return Slots::local(&mut slots.fallback_next, Instant::now(), configured);
        };
        let Some(interval) = interval(configured) else {
            return Instant::now();
        };
        loop {
            let now = Instant::now();
            if let Some(at) = slots.leased(now) {
                return at;
            }
            let lease = match shared.up(now) {
                true => shared.lease(template, configured, interval).await,
                false => None,
            };
            self.note_fallback(lease.is_none());
            let Some((ahead_us, granted)) = lease else {
                let share = configured / shared.replicas();
                return Slots::local(&mut slots.fallback_next, now, share);
            };
            if granted == 0 {
                // Moments are leased a second ahead at most: wait until they come within.
                tokio::time::sleep(Duration::from_micros(ahead_us)).await;
                continue;
            }
            slots.lease_next = Some(now + Duration::from_micros(ahead_us));
            slots.lease_left = granted;
            slots.lease_interval = interval;
        }
    }

    fn note_fallback(&self, falling_back: bool) {
        if let Some(metrics) = &self.metrics {
            metrics.rate_fallback(falling_back);
        }
    }

    /// Learns from one answer of `template`'s destination (see the module's doc).
    pub fn observe(&self, template: &str, configured: Option<f64>, answer: Answer<'_>) {
        let Answer {
            result,
            sent,
            accepted,
        } = answer;
        let refused = match result {
            slow if slow.slow_down() => true,
            AttemptResult::Status { code, .. } => {
                if !(200..300).contains(code) || self.adapted.load(Ordering::Relaxed) == 0 {
                    return;
                }
                false
            }
            _ => return,
        };
        let rate = {
            let mut templates = self.templates.lock();
            match templates.get(template) {
                Some(rate) if rate.configured == configured => rate.clone(),
                _ if !refused => return,
                _ => {
                    let rate = Arc::new(TemplateRate::new(configured));
                    templates.insert(template.to_string(), rate.clone());
                    rate
                }
            }
        };
        let now = std::time::Instant::now();
        let mut adapt = rate.adapt.lock();
        let before = adapt.as_ref().map(|a| a.effective);
        match adapt.as_mut() {
            None if !refused => return,
            None => {
                *adapt = Some(Adapt::start(configured, now));
                self.adapted.fetch_add(1, Ordering::Relaxed);
            }
            Some(state) => {
                let lately = || accepted.rate(crate::park::now_ms() / 1000);
                if state.answer(now, refused, sent, lately) {
                    *adapt = None;
                    self.adapted.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        let after = adapt.as_ref().map(|a| a.effective);
        if before != after
            && let Some(metrics) = &self.metrics
        {
            let lower = after.is_some_and(|a| before.is_none_or(|b| a < b));
            metrics.rate_adapted(if lower { "down" } else { "up" });
        }
    }

    /// The rate `template` sends at now after adaptation, `None` when not adapted.
    pub fn effective(&self, template: &str) -> Option<f64> {
        let templates = self.templates.lock();
        let rate = templates.get(template)?;
        rate.adapt.lock().as_ref().map(|a| a.effective)
    }

    /// Writes this replica's heartbeat and reads how many are alive, every
    /// [`HEARTBEAT_EVERY`] until `stop`.
    pub async fn heartbeat(&self, stop: CancellationToken) {
        let Some(shared) = &self.shared else { return };
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

impl TemplateRate {
    fn new(configured: Option<f64>) -> TemplateRate {
        TemplateRate {
            configured,
            slots: tokio::sync::Mutex::default(),
            adapt: Mutex::default(),
        }
    }
}

impl Adapt {
    /// The first 429 (in the first second watched): until that second ends, the configured
    /// rate holds (none: no limit yet).
    fn start(configured: Option<f64>, now: std::time::Instant) -> Adapt {
        let effective = configured.unwrap_or(f64::INFINITY);
        Adapt {
            effective,
            ceiling: effective,
            level: effective,
            window_start: now,
            accepted: 0,
            refused: 1,
            waited: false,
            idle: 0,
            changed_at: now,
        }
    }

    /// One answer at `now` (`refused`: a 429) to a request `sent` then. Answers to
    /// requests sent before the rate last changed are not counted: a burst sent before a
    /// limit, answered after it, would lower it again and again. `true` when adaptation is
    /// over.
    fn answer(
        &mut self,
        now: std::time::Instant,
        refused: bool,
        sent: std::time::Instant,
        lately: impl FnOnce() -> f64,
    ) -> bool {
        let over =
            now.saturating_duration_since(self.window_start) >= WINDOW && self.close_window(now, lately());
        if sent < self.changed_at {
            return over;
        }
        if refused {
            self.refused += 1;
        } else {
            self.accepted += 1;
        }
        over
    }

    /// Decides from the second that ended: with a 429 in it, multiplied by the share of its
    /// requests the destination accepted (half at least; never below what it accepted per
    /// second lately), or for a template not limited yet,
    /// set to what the destination accepted per second lately (`lately`, counted on every
    /// answer: the answers of one second arrive in any order, so a first 429 may come before
    /// most of the second's accepted ones); without one but with requests held back
    /// by the adapted rate, raised by a twentieth of the level (holding nothing back is no
    /// evidence the destination takes more). `true` when adaptation is over: back at the
    /// configured rate, far above the level for a template without one, or holding nothing
    /// back for [`IDLE_TO_END`] seconds.
    fn close_window(&mut self, now: std::time::Instant, lately: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.window_start).as_secs_f64();
        let (accepted, refused, waited) = (self.accepted, self.refused, self.waited);
        self.window_start = now;
        self.accepted = 0;
        self.refused = 0;
        self.waited = false;
        if refused > 0 {
            self.idle = 0;
            let accepted_share = accepted as f64 / (accepted + refused) as f64;
            let lowered = match self.effective.is_finite() {
                // Never below what the destination accepted in the last full second: a 429
                // may belong to its own second begun before this one.
                true => (self.effective * accepted_share.max(0.5)).max(lately.min(self.effective)),
                false => {
                    let accepted_rate = (accepted as f64 / elapsed).max(lately);
                    if accepted_rate == 0.0 {
                        return false; // nothing to go by yet
                    }
                    accepted_rate
                }
            };
            self.effective = lowered.max(MIN_ADAPTED);
            self.level = self.effective;
            self.changed_at = now;
            return false;
        }
        if !waited && self.effective.is_finite() {
            self.idle += 1;
            return self.idle >= IDLE_TO_END;
        }
        self.idle = 0;
        if self.effective.is_finite() {
            self.effective += (self.level * 0.05).max(MIN_ADAPTED);
            self.changed_at = now;
        }
        self.effective >= self.ceiling || self.effective > self.level * 10.0
    }
}

#[cfg(test)]
mod tests;
