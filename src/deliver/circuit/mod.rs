//! A circuit breaker per destination host, in process. A destination that keeps failing
//! (timeouts, connection errors, 5xx; a 429 lowers the rate instead) opens its breaker: its deliveries are parked on
//! the retry tier that covers the cool-down, without an attempt (no connection, no timeout
//! wait), recorded as `circuit_open`. When it opens, how probes decide and how traffic
//! ramps back up is the pure state machine of [`breaker`]. A probe that never answers (its
//! future dropped: a task aborted at a drain, a request raced against a cancellation, an
//! admin test whose handler went away) lets another go ([`ProbeGuard`]), so a breaker never
//! stays half-open for good. [`Breakers`] keeps one per host and reports transitions.

mod breaker;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::template::BreakerSettings;
pub use breaker::{Admit, Breaker, PROBES, Transition};

/// One breaker per destination host. Only hosts that failed have one, and a closed one
/// whose last failure is older than any window can count is dropped at the next sweep; the
/// map never holds more than [`MAX_HOSTS`].
#[derive(Default)]
pub struct Breakers {
    hosts: Mutex<Hosts>,
}

#[derive(Default)]
struct Hosts {
    map: crate::FastMap<String, Breaker>,
    /// The size at which the next sweep happens (twice the size the last one left).
    sweep_at: usize,
    /// When the map was last swept: a full map is swept at most once a minute.
    swept: Option<Instant>,
}

impl Hosts {
    /// Makes room for a new host if it can; whether it has room.
    fn room_for_one_more(&mut self, now: Instant) -> bool {
        let full = self.map.len() >= MAX_HOSTS;
        let due = self.map.len() >= self.sweep_at.max(SWEEP_AT)
            || (full
                && self
                    .swept
                    .is_none_or(|at| now.saturating_duration_since(at) >= FULL_SWEEP_EVERY));
        if due {
            self.map.retain(|_, b| !b.idle(now, LONGEST_WINDOW));
            self.sweep_at = (self.map.len() * 2).max(SWEEP_AT);
            self.swept = Some(now);
        }
        self.map.len() < MAX_HOSTS
    }
}

/// Hosts kept before idle breakers are swept out; a sweep happens again only once the map
/// has grown by as much, so failures to many hosts do not each pay for a walk of the map.
const SWEEP_AT: usize = 1024;
/// Hosts with a breaker at most: a new host past this many gets none (its failures are
/// not counted) until the next sweep makes room. Hosts are written out in templates, so
/// this takes thousands of templates failing at once.
const MAX_HOSTS: usize = 16 * SWEEP_AT;
/// The longest `window_seconds` a template may set: a closed breaker whose last failure is
/// older has nothing left to count.
const LONGEST_WINDOW: Duration = Duration::from_secs(3600);
/// How often a full map is swept for room.
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(60);

impl Breakers {
    pub fn admit(&self, host: &str, now: Instant) -> (Admit, Option<Transition>) {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        match hosts.map.get_mut(host) {
            Some(breaker) => breaker.admit(now),
            None => (Admit::Go, None),
        }
    }

    pub fn record(
        &self,
        host: &str,
        failed: bool,
        probe: bool,
        now: Instant,
        settings: BreakerSettings,
    ) -> Option<Transition> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if !hosts.map.contains_key(host) {
            if !failed && !probe {
                return None; // the common case: a healthy host never gets an entry
            }
            if !hosts.room_for_one_more(now) {
                return None;
            }
        }
        hosts
            .map
            .entry(host.to_string())
            .or_default()
            .record(failed, probe, now, settings)
    }

    fn abandon_probe(&self, host: &str) {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(breaker) = hosts.map.get_mut(host) {
            breaker.abandon_probe();
        }
    }

    /// Destinations whose breaker is open or half-open now.
    pub fn open_count(&self) -> usize {
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts
            .map
            .values()
            .filter(|b| !matches!(b, Breaker::Closed { .. }))
            .count()
    }
}

/// Held by the request a half-open breaker let through as its probe. Dropped before
/// [`ProbeGuard::answered`], the probe is abandoned and the next request probes.
pub struct ProbeGuard<'a> {
    breakers: &'a Breakers,
    host: &'a str,
    answered: bool,
}

impl<'a> ProbeGuard<'a> {
    pub fn new(breakers: &'a Breakers, host: &'a str) -> Self {
        ProbeGuard {
            breakers,
            host,
            answered: false,
        }
    }

    /// The probe's result was recorded.
    pub fn answered(mut self) {
        self.answered = true;
    }
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.breakers.abandon_probe(self.host);
        }
    }
}

#[cfg(test)]
mod probe_tests {
    use super::*;

    const SETTINGS: BreakerSettings = BreakerSettings {
        failure_threshold: 1,
        failure_rate_percent: 50,
        window_seconds: 10,
        cooldown_seconds: 1,
        max_wait_seconds: 86_400,
    };

    /// A request to `host` as the sender makes it: admitted, holding its probe guard, then
    /// (unless dropped before) recording its result.
    async fn request(
        breakers: &Breakers,
        host: &str,
        answer: impl std::future::Future<Output = bool>,
    ) -> Admit {
        let (admit, _) = breakers.admit(host, Instant::now());
        let guard = (admit == Admit::Probe).then(|| ProbeGuard::new(breakers, host));
        let failed = answer.await;
        breakers.record(host, failed, admit == Admit::Probe, Instant::now(), SETTINGS);
        if let Some(guard) = guard {
            guard.answered();
        }
        admit
    }

    #[tokio::test]
    async fn a_probe_whose_future_is_dropped_lets_the_next_request_probe() {
        let breakers = Breakers::default();
        let host = "h:443";
        assert_eq!(request(&breakers, host, async { true }).await, Admit::Go);
        assert!(matches!(
            request(&breakers, host, async { false }).await,
            Admit::Refuse { .. }
        ));
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // The probe's request never answers and its future is dropped (a drain's abort).
        let probe = request(&breakers, host, std::future::pending());
        assert!(
            tokio::time::timeout(Duration::from_millis(20), probe)
                .await
                .is_err(),
            "the probe hangs and is dropped"
        );
        // Not stuck half-open: the next requests probe, and their successes close it.
        for _ in 0..3 {
            assert_eq!(request(&breakers, host, async { false }).await, Admit::Probe);
        }
        assert_eq!(breakers.open_count(), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTINGS: BreakerSettings = BreakerSettings {
        failure_threshold: 3,
        failure_rate_percent: 50,
        window_seconds: 10,
        cooldown_seconds: 30,
        max_wait_seconds: 86_400,
    };

    fn secs(start: Instant, s: u64) -> Instant {
        start + Duration::from_secs(s)
    }

    #[test]
    fn healthy_hosts_take_no_memory_and_open_ones_are_counted() {
        let breakers = Breakers::default();
        let t0 = Instant::now();
        assert_eq!(breakers.record("ok:443", false, false, t0, SETTINGS), None);
        assert_eq!(breakers.hosts.lock().unwrap().map.len(), 0);
        for i in 0..3 {
            breakers.record("down:443", true, false, secs(t0, i), SETTINGS);
        }
        assert_eq!(breakers.open_count(), 1);
        assert_eq!(
            breakers.admit("down:443", secs(t0, 5)).0,
            Admit::Refuse {
                reopens_in: Duration::from_secs(27)
            }
        );
        assert_eq!(breakers.admit("ok:443", secs(t0, 5)).0, Admit::Go);
    }

    #[test]
    fn hosts_that_failed_once_long_ago_are_swept_and_the_map_is_bounded() {
        let breakers = Breakers::default();
        let t0 = Instant::now();
        let later = t0 + LONGEST_WINDOW * 2 + Duration::from_secs(1);
        for i in 0..SWEEP_AT {
            breakers.record(&format!("once-{i}:443"), true, false, t0, SETTINGS);
        }
        // Two hours later, a new failing host sweeps the ones with nothing left to count.
        breakers.record("new:443", true, false, later, SETTINGS);
        assert_eq!(breakers.hosts.lock().unwrap().map.len(), 1);
        // Hosts failing all at once fill the map up to its bound, not past it.
        for i in 0..MAX_HOSTS + 10 {
            breakers.record(&format!("busy-{i}:443"), true, false, later, SETTINGS);
        }
        assert_eq!(breakers.hosts.lock().unwrap().map.len(), MAX_HOSTS);
        assert_eq!(breakers.admit("busy-99999:443", later).0, Admit::Go);
    }

    #[test]
    fn settings_are_bounded() {
        assert!(BreakerSettings::default().validate().is_ok());
        let bad = BreakerSettings {
            failure_threshold: 0,
            ..BreakerSettings::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "failure_threshold");
        let bad = BreakerSettings {
            failure_rate_percent: 101,
            ..BreakerSettings::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "failure_rate_percent");
    }
}
