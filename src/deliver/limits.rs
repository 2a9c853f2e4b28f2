//! Bounded concurrency: a global limit on requests in flight and one per destination
//! host, and a template's optional rate limit ([`super::rates`]) and concurrency limit
//! (`template_concurrency`). A request waits for its template's rate first, holding no
//! permit; then for its template's permit; then for a global permit, holding no host permit;
//! then takes its host permit if the host has room. If it has none, the request lets its global permit
//! go, waits for the host, and takes a global permit again. So neither a rate-limited
//! template nor a slow host at its limit holds permits other hosts could use.
//!
//! With several event loops, the global limit is shared out: each loop has its own share
//! (`crate::event_loops` computes it), while host permits and rates are the process's
//! ([`Hosts`]). Requests queued on a
//! busy loop hold no host permit, so they never keep another loop from a host with room
//! (if they did, the loops would wake each other across threads for most deliveries:
//! docs/performance.md). Only a request that waited for its host holds its host permit
//! while it waits for its loop's: a host at its limit can then wait for a busy loop even
//! while another loop has room (it is delayed, never over its limit).
//!
//! Requests waiting for their rate, their host or a token are counted ([`Limits::waiting`]): the
//! consumers do not count them as processing slots, so a saturated destination only slows
//! its own traffic (the memory budget still bounds the total). Idle per-host semaphores and
//! rate limiters are dropped once there are many, so hosts from rendered URLs cannot grow
//! the maps without bound.

use parking_lot::Mutex;
use std::sync::Arc;

use super::fair::{FairPermit, FairSemaphore};
use super::rates::Rates;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, watch};
use tokio_util::sync::CancellationToken;

pub struct Limits {
    /// This event loop's share of `max_inflight`: a loop never waits for,
    /// nor wakes, another loop's requests. Shared, it cost two loops more CPU per delivery
    /// than one loop and left both half idle (docs/performance.md).
    global: Arc<Semaphore>,
    hosts: Arc<Hosts>,
    /// This loop's requests waiting for a rate token or a host permit, watched by its
    /// consumer.
    waiting: watch::Sender<usize>,
    /// Watchers are woken only while the count grows up to this (see [`Waiting`]).
    wake_below: usize,
}

/// What every event loop's limits share: the per-host permits and rates (a destination's
/// limit holds for the process), and the end of sending.
pub struct Hosts {
    per_host_default: usize,
    /// Per host and limit, served round-robin by campaign ([`FairSemaphore`]).
    permits: Mutex<crate::FastMap<(String, usize), Arc<FairSemaphore>>>,
    /// Per template id and `template_concurrency`.
    template_permits: Mutex<crate::FastMap<(String, usize), Arc<Semaphore>>>,
    pub(super) rates: Rates,
    closed: CancellationToken,
}

impl Hosts {
    /// `per_host_default` requests in flight per destination host unless a template says.
    pub fn new(per_host_default: usize) -> Arc<Hosts> {
        Hosts::with_rates(per_host_default, Rates::new(None, None))
    }

    /// As [`Hosts::new`], with templates' rates kept by `rates` (shared through Redis).
    pub fn with_rates(per_host_default: usize, rates: Rates) -> Arc<Hosts> {
        Arc::new(Hosts {
            per_host_default,
            permits: Mutex::default(),
            template_permits: Mutex::default(),
            rates,
            closed: CancellationToken::new(),
        })
    }

    /// The semaphore of `key` in `map`, made with `limit` permits; idle ones are dropped
    /// once there are many (keys come from rendered URLs and events).
    fn semaphore<S>(
        map: &Mutex<crate::FastMap<(String, usize), Arc<S>>>,
        key: String,
        limit: usize,
        make: impl FnOnce(usize) -> S,
    ) -> Arc<S> {
        let mut map = map.lock();
        if map.len() >= MAP_SWEEP_AT {
            // Idle: nobody holds or waits for a permit (only the map has the Arc).
            map.retain(|_, semaphore| Arc::strong_count(semaphore) > 1);
        }
        map.entry((key, limit))
            .or_insert_with(|| Arc::new(make(limit)))
            .clone()
    }
}

/// Entries kept in the per-host and per-rate maps before idle ones are dropped.
const MAP_SWEEP_AT: usize = 1024;

/// Counts one request as waiting for its destination while it lives. The consumers start
/// one more record for each waiting request, up to twice the global limit, and read the
/// count whenever they start records: so they are woken when it grows within that range
/// only. Waking them on every change cost two thread wake-ups per delivery whenever a host
/// was saturated.
struct Waiting<'a>(&'a Limits);

impl<'a> Waiting<'a> {
    fn new(limits: &'a Limits) -> Self {
        limits.waiting.send_if_modified(|n| {
            *n += 1;
            *n <= limits.wake_below
        });
        Waiting(limits)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.send_if_modified(|n| {
            *n = n.saturating_sub(1);
            false
        });
    }
}

/// A template's own limits, for [`Limits::acquire`]: `rate_limit_per_sec` and
/// `template_concurrency`.
#[derive(Debug, Clone, Copy)]
pub struct Rate<'a> {
    pub template_id: &'a str,
    pub per_second: Option<f64>,
    pub concurrency: Option<usize>,
    /// The delivery's campaign: a host's waiting requests are served round-robin by it.
    pub campaign: i64,
}

/// The permits of one request; released on drop.
pub struct Permits {
    _host: FairPermit,
    _global: OwnedSemaphorePermit,
    _template: Option<OwnedSemaphorePermit>,
}

impl Limits {
    /// The limits of a process with one event loop: `global` requests in flight.
    pub fn new(global: usize, per_host_default: usize) -> Self {
        Limits::of_loop(Hosts::new(per_host_default), global)
    }

    /// An event loop's limits: `global` requests in flight (its share), to the process's
    /// `hosts`.
    pub fn of_loop(hosts: Arc<Hosts>, global: usize) -> Limits {
        Limits {
            global: Arc::new(Semaphore::new(global)),
            hosts,
            waiting: watch::Sender::new(0),
            wake_below: global.saturating_mul(2),
        }
    }

    /// How many requests wait for their destination's rate or host permit now.
    pub fn waiting(&self) -> usize {
        *self.waiting.borrow()
    }

    /// Runs `wait` counted as a request waiting for its destination (an OAuth 2.0 token,
    /// say): like a rate or host wait, it holds no permit and no processing slot.
    pub async fn waiting_for<F: std::future::Future>(&self, wait: F) -> F::Output {
        let _waiting = Waiting::new(self);
        wait.await
    }

    /// Changes when more requests wait for their destination (up to twice the global limit;
    /// fewer waiting, or more beyond that, change the count without a wake-up).
    pub fn watch_waiting(&self) -> watch::Receiver<usize> {
        self.waiting.subscribe()
    }

    /// Waits for room to send one request to `host`. `override_limit` is the template's
    /// `max_concurrency`: templates sharing a host and a limit share the permits. `None`
    /// once [`close`](Limits::close)d: nothing new may start.
    pub async fn acquire(
        &self,
        host: String,
        override_limit: Option<usize>,
        rate: Option<Rate<'_>>,
    ) -> Option<Permits> {
        if self.hosts.closed.is_cancelled() {
            return None; // another loop's close() closed only its own semaphore
        }
        let limit = override_limit.unwrap_or(self.hosts.per_host_default);
        let host_semaphore = Hosts::semaphore(&self.hosts.permits, host, limit, FairSemaphore::new);
        let campaign = rate.map_or(0, |rate| rate.campaign);
        let mut template = None;
        if let Some(rate) = rate {
            if self.hosts.rates.may_wait(rate.per_second) {
                let _waiting = Waiting::new(self);
                let closed = &self.hosts.closed;
                self.hosts
                    .rates
                    .wait(rate.template_id, rate.per_second, closed)
                    .await?;
            }
            if let Some(concurrency) = rate.concurrency {
                template = Some(self.template_permit(rate.template_id, concurrency).await?);
            }
        }
        // The loop's own permit first, holding nothing else: requests a busy loop has
        // queued keep no host permit from the other loops (waking a loop from another
        // thread costs more than the delivery). Then the host's, when it has room.
        let global = self.global_permit().await?;
        let (host, global) = match host_semaphore.try_acquire() {
            Some(host) => (host, global),
            None => {
                // A host at its limit: wait for it without the loop's permit, which other
                // hosts can use meanwhile; then take the loop's again.
                drop(global);
                let _waiting = Waiting::new(self);
                let host = tokio::select! {
                    _ = self.hosts.closed.cancelled() => return None,
                                        permit = host_semaphore.acquire(campaign) => permit,
                };
                (host, self.global_permit().await?)
            }
        };
        if self.hosts.closed.is_cancelled() {
            // Closed by another loop while this one waited: its own semaphore is open.
            return None;
        }
        Some(Permits {
            _host: host,
            _global: global,
            _template: template,
        })
    }

    /// One of the template's `template_concurrency` permits, counted as waiting while it
    /// waits (a template at its limit slows only itself).
    async fn template_permit(&self, template_id: &str, limit: usize) -> Option<OwnedSemaphorePermit> {
        let semaphore = Hosts::semaphore(
            &self.hosts.template_permits,
            template_id.to_string(),
            limit,
            Semaphore::new,
        );
        if let Ok(permit) = semaphore.clone().try_acquire_owned() {
            return Some(permit);
        }
        let _waiting = Waiting::new(self);
        tokio::select! {
            _ = self.hosts.closed.cancelled() => None,
            permit = semaphore.acquire_owned() => permit.ok(),
        }
    }

    /// Learns from an answer of a template's destination (a 429 lowers its rate).
    pub fn observe(&self, template_id: &str, configured: Option<f64>, answer: super::rates::Answer<'_>) {
        self.hosts.rates.observe(template_id, configured, answer);
    }

    /// A template's rate after adaptation to 429s, `None` when not adapted.
    pub fn effective_rate(&self, template_id: &str) -> Option<f64> {
        self.hosts.rates.effective(template_id)
    }

    /// One of this loop's permits. Taken at once when there is room (the usual case):
    /// waiting in a `select!` registers with the cancellation token and the semaphore.
    async fn global_permit(&self) -> Option<OwnedSemaphorePermit> {
        match self.global.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(TryAcquireError::Closed) => None,
            Err(TryAcquireError::NoPermits) => tokio::select! {
                biased;
                _ = self.hosts.closed.cancelled() => None,
                permit = self.global.clone().acquire_owned() => permit.ok(),
            },
        }
    }

    /// Refuses every waiting and future request (end of the drain): requests already in
    /// flight keep their permits, nothing new starts.
    pub fn close(&self) {
        self.hosts.closed.cancel();
        self.global.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_full_host_does_not_hold_global_permits() {
        let limits = Arc::new(Limits::new(2, 1));
        let _busy = limits.acquire(String::from("slow:80"), None, None).await;
        // A second request to the same host waits without taking a global permit...
        let waiting = tokio::spawn({
            let limits = limits.clone();
            async move { limits.acquire(String::from("slow:80"), None, None).await }
        });
        tokio::task::yield_now().await;
        // ...so another host still gets one at once.
        tokio::time::timeout(
            Duration::from_secs(5),
            limits.acquire(String::from("fast:80"), None, None),
        )
        .await
        .expect("other hosts are not starved");
        assert!(!waiting.is_finished());
        assert_eq!(
            limits.waiting(),
            1,
            "the waiter is counted as waiting for its host"
        );
        waiting.abort();
        tokio::task::yield_now().await;
        assert_eq!(limits.waiting(), 0);
    }

    #[tokio::test]
    async fn a_template_override_gets_its_own_host_limit() {
        let limits = Limits::new(10, 1);
        let _a = limits.acquire(String::from("h:80"), None, None).await;
        tokio::time::timeout(
            Duration::from_secs(5),
            limits.acquire(String::from("h:80"), Some(4), None),
        )
        .await
        .expect("override has its own permits");
    }

    #[tokio::test]
    async fn each_loop_sends_its_share_and_hosts_are_the_process_s() {
        let hosts = Hosts::new(10);
        let (main, other) = (Limits::of_loop(hosts.clone(), 2), Limits::of_loop(hosts, 1));
        let quick = Duration::from_millis(50);
        // Loop 0 has two of the three permits, loop 1 one.
        let a = main.acquire(String::from("h:80"), None, None).await;
        let b = main.acquire(String::from("h:80"), None, None).await;
        assert!(a.is_some() && b.is_some());
        let full = tokio::time::timeout(quick, main.acquire(String::from("h:80"), None, None)).await;
        assert!(full.is_err(), "loop 0 is at its share");
        let c = other.acquire(String::from("h:80"), None, None).await;
        assert!(c.is_some(), "loop 1's share is its own");
        // A destination's limit holds across loops.
        drop(a);
        let one = main.acquire(String::from("one:80"), Some(1), None).await;
        assert!(one.is_some());
        let held = tokio::time::timeout(quick, other.acquire(String::from("one:80"), Some(1), None));
        assert!(held.await.is_err(), "the host's one permit is taken on loop 0");
        // Closing one loop's limits stops every loop.
        drop(c);
        main.close();
        assert!(other.acquire(String::from("h:80"), None, None).await.is_none());
    }

    #[tokio::test]
    async fn a_busy_loop_holds_no_host_permit_another_loop_could_use() {
        use futures::FutureExt;
        // Two loops of two requests each; the host takes four at once.
        let hosts = Hosts::new(4);
        let main = Arc::new(Limits::of_loop(hosts.clone(), 2));
        let other = Limits::of_loop(hosts, 2);
        let a = main.acquire(String::from("h:80"), None, None).await;
        let b = main.acquire(String::from("h:80"), None, None).await;
        assert!(a.is_some() && b.is_some());
        // Loop 0 has more records for the host than its share: they wait for its permits...
        let queued: Vec<_> = (0..2)
            .map(|_| {
                let main = main.clone();
                tokio::spawn(async move { main.acquire(String::from("h:80"), None, None).await })
            })
            .collect();
        tokio::task::yield_now().await;
        // ...without taking the host's last two permits from loop 1.
        let c = other.acquire(String::from("h:80"), None, None).now_or_never();
        assert!(matches!(c, Some(Some(_))), "loop 1 sends at once");
        let d = other.acquire(String::from("h:80"), None, None).now_or_never();
        assert!(matches!(d, Some(Some(_))), "loop 1 sends its whole share");
        assert_eq!(
            main.waiting(),
            0,
            "waiting for their own loop is not waiting for the host"
        );
        // Loop 0's queued requests go once its own requests end and the host has room.
        drop((a, b, c, d));
        for request in queued {
            assert!(request.await.unwrap().is_some());
        }
    }

    #[tokio::test]
    async fn closing_refuses_waiting_and_new_requests() {
        let limits = Arc::new(Limits::new(1, 10));
        let held = limits.acquire(String::from("h:80"), None, None).await;
        assert!(held.is_some());
        let waiting = tokio::spawn({
            let limits = limits.clone();
            async move { limits.acquire(String::from("h:80"), None, None).await.is_none() }
        });
        tokio::task::yield_now().await;
        limits.close();
        assert!(waiting.await.unwrap(), "the waiter is refused");
        assert!(
            limits
                .acquire(String::from("other:80"), None, None)
                .await
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_rate_spaces_requests_and_closing_stops_the_wait() {
        let limits = Arc::new(Limits::new(10, 10));
        let rate = Rate {
            template_id: "t",
            per_second: Some(20.0),
            concurrency: None,
            campaign: 0,
        };
        let started = std::time::Instant::now();
        for _ in 0..5 {
            drop(limits.acquire(String::from("h:80"), None, Some(rate)).await);
        }
        // Five requests at 20/s: four gaps of 50 ms at least (a lower bound: a slow machine
        // only makes it longer).
        assert!(
            started.elapsed() >= Duration::from_millis(195),
            "{:?}",
            started.elapsed()
        );
        // A template that must wait 100 s for its next request...
        let slow = Rate {
            template_id: "slow",
            per_second: Some(0.01),
            concurrency: None,
            campaign: 0,
        };
        drop(limits.acquire(String::from("h:80"), None, Some(slow)).await);
        // ...does not hold back another one.
        let other = Rate {
            template_id: "other",
            per_second: Some(0.01),
            concurrency: None,
            campaign: 0,
        };
        tokio::time::timeout(
            Duration::from_secs(5),
            limits.acquire(String::from("h:80"), None, Some(other)),
        )
        .await
        .expect("another template's first request goes at once");
        let waiting = tokio::spawn({
            let limits = limits.clone();
            async move {
                limits
                    .acquire(String::from("h:80"), None, Some(slow))
                    .await
                    .is_none()
            }
        });
        tokio::task::yield_now().await;
        limits.close();
        assert!(
            tokio::time::timeout(Duration::from_secs(5), waiting)
                .await
                .unwrap()
                .unwrap(),
            "a closed limiter ends the wait for a rate token"
        );
    }
}
