//! Bounded concurrency (§6): a global limit on requests in flight and one per destination
//! host. A request takes its host permit first, then a global one, so a slow host that is
//! at its limit never holds global permits other hosts could use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Limits {
    global: Arc<Semaphore>,
    per_host_default: usize,
    hosts: Mutex<HashMap<(String, usize), Arc<Semaphore>>>,
}

/// Both permits of one request; released on drop.
pub struct Permits {
    _host: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

impl Limits {
    pub fn new(global: usize, per_host_default: usize) -> Self {
        Limits {
            global: Arc::new(Semaphore::new(global)),
            per_host_default,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for room to send one request to `host`. `override_limit` is the template's
    /// `max_concurrency`: templates sharing a host and a limit share the permits. `None`
    /// once [`close`](Limits::close)d: nothing new may start.
    pub async fn acquire(&self, host: String, override_limit: Option<usize>) -> Option<Permits> {
        let limit = override_limit.unwrap_or(self.per_host_default);
        let host_semaphore = self
            .hosts
            .lock()
            .expect("lock poisoned")
            .entry((host, limit))
            .or_insert_with(|| Arc::new(Semaphore::new(limit)))
            .clone();
        let host = host_semaphore.acquire_owned().await.ok()?;
        let global = self.global.clone().acquire_owned().await.ok()?;
        Some(Permits {
            _host: host,
            _global: global,
        })
    }

    /// Refuses every waiting and future request (end of the drain): requests already in
    /// flight keep their permits, nothing new starts.
    pub fn close(&self) {
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
        let _busy = limits.acquire(String::from("slow:80"), None).await;
        // A second request to the same host waits without taking a global permit...
        let waiting = tokio::spawn({
            let limits = limits.clone();
            async move { limits.acquire(String::from("slow:80"), None).await }
        });
        tokio::task::yield_now().await;
        // ...so another host still gets one at once.
        tokio::time::timeout(
            Duration::from_secs(5),
            limits.acquire(String::from("fast:80"), None),
        )
        .await
        .expect("other hosts are not starved");
        assert!(!waiting.is_finished());
        waiting.abort();
    }

    #[tokio::test]
    async fn a_template_override_gets_its_own_host_limit() {
        let limits = Limits::new(10, 1);
        let _a = limits.acquire(String::from("h:80"), None).await;
        tokio::time::timeout(
            Duration::from_secs(5),
            limits.acquire(String::from("h:80"), Some(4)),
        )
        .await
        .expect("override has its own permits");
    }

    #[tokio::test]
    async fn closing_refuses_waiting_and_new_requests() {
        let limits = Arc::new(Limits::new(1, 10));
        let held = limits.acquire(String::from("h:80"), None).await;
        assert!(held.is_some());
        let waiting = tokio::spawn({
            let limits = limits.clone();
            async move { limits.acquire(String::from("h:80"), None).await.is_none() }
        });
        tokio::task::yield_now().await;
        limits.close();
        assert!(waiting.await.unwrap(), "the waiter is refused");
        assert!(limits.acquire(String::from("other:80"), None).await.is_none());
    }
}
