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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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
/// Entries kept before idle ones are dropped (template ids come from events).
const SWEEP_AT: usize = 1024;

/// Every template's rate in this process.
pub struct Rates {
    templates: Mutex<crate::FastMap<String, Arc<TemplateRate>>>,
    shared: Option<Shared>,
    /// Templates whose rate is lowered now: while none is, templates without a configured
    /// rate skip every lookup.
    adapted: AtomicUsize,
    metrics: Option<Arc<Metrics>>,
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

impl Rates {
    /// Rates of this process alone (no Redis: the demo), or shared through `shared`.
    pub fn new(shared: Option<SharedLimits>, metrics: Option<Arc<Metrics>>) -> Rates {
        Rates {
            templates: Mutex::default(),
            shared: shared.map(Shared::new),
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
                let ahead = Duration::from_micros(ahead_us).min(MAX_RATE_PERIOD);
                tokio::time::sleep(ahead).await;
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
    /// [`shared::HEARTBEAT_EVERY`] until `stop` (nothing without Redis).
    pub async fn heartbeat(&self, stop: CancellationToken) {
        if let Some(shared) = &self.shared {
            shared.heartbeat(stop).await;
        }
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

mod adapt;
mod shared;

pub use adapt::Accepted;
use adapt::Adapt;
use shared::Shared;

#[cfg(test)]
mod tests;
