//! A destination host's permits, shared fairly between the campaigns waiting for them: a
//! blast of one campaign queued at a host does not hold back a small campaign that arrives
//! behind it (docs/how-it-works.md, "Fair share between campaigns"). A request takes a free
//! permit at once; one that has to wait joins its campaign's queue, and a permit given back
//! goes to the first waiter of the campaign with the least work: permits given to it while
//! waiting plus requests still waiting (in turn on ties). Two blasts share the host equally;
//! a small campaign that arrives behind a blast goes first, as the shortest job would.
//! A campaign's count is forgotten when its queue empties.
//!
//! tokio's `Semaphore` serves its waiters first come, first served, which is exactly what
//! this must not do; the queues here are a few lines around a mutex and a oneshot channel
//! per waiter, taken only when the host is at its limit.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// Permits of one host (and limit).
pub struct FairSemaphore {
    state: Mutex<State>,
}

struct State {
    available: usize,
    /// Campaigns with waiters, each with its waiters in order and the permits it was given
    /// since it began waiting.
    turns: VecDeque<Waiting>,
}

struct Waiting {
    campaign: i64,
    waiters: VecDeque<oneshot::Sender<()>>,
    served: u64,
}

/// One permit; given to the next waiter in turn, or back to the host, when dropped.
pub struct FairPermit {
    semaphore: Arc<FairSemaphore>,
}

impl FairSemaphore {
    pub fn new(permits: usize) -> FairSemaphore {
        FairSemaphore {
            state: Mutex::new(State {
                available: permits,
                turns: VecDeque::new(),
            }),
        }
    }

    /// A permit now, if one is free and nobody waits for it.
    pub fn try_acquire(self: &Arc<Self>) -> Option<FairPermit> {
        let mut state = self.state.lock();
        if state.available == 0 || !state.turns.is_empty() {
            return None;
        }
        state.available -= 1;
        Some(FairPermit {
            semaphore: self.clone(),
        })
    }

    /// A permit for a request of `campaign`, waiting for its turn if none is free. Dropping
    /// the future gives up the place in the queue.
    pub async fn acquire(self: &Arc<Self>, campaign: i64) -> FairPermit {
        let waiter = {
            let mut state = self.state.lock();
            if state.available > 0 && state.turns.is_empty() {
                state.available -= 1;
                return FairPermit {
                    semaphore: self.clone(),
                };
            }
            let (sender, receiver) = oneshot::channel();
            match state.turns.iter_mut().find(|w| w.campaign == campaign) {
                Some(waiting) => waiting.waiters.push_back(sender),
                None => state.turns.push_back(Waiting {
                    campaign,
                    waiters: VecDeque::from([sender]),
                    served: 0,
                }),
            }
            Waiter {
                receiver: Some(receiver),
                semaphore: self.clone(),
            }
        };
        waiter.turn().await
    }

    /// Gives a permit to the first waiter of the campaign with the least work, or back.
    fn release(&self) {
        let mut state = self.state.lock();
        // The least work first: ties go in turn, as served campaigns move back.
        let work = |w: &Waiting| w.served + w.waiters.len() as u64;
        while let Some(least) = (0..state.turns.len()).min_by_key(|&i| work(&state.turns[i])) {
            let Some(mut waiting) = state.turns.remove(least) else {
                break;
            };
            let next = waiting.waiters.pop_front();
            let handed = next.is_some_and(|next| next.send(()).is_ok());
            waiting.served += u64::from(handed);
            if !waiting.waiters.is_empty() {
                state.turns.push_back(waiting);
            }
            if handed {
                return;
            }
        }
        state.available += 1;
    }

    /// Requests waiting for a permit now.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.state.lock().turns.iter().map(|w| w.waiters.len()).sum()
    }
}

/// A request's place in its campaign's queue. Given up (dropped) after a permit was handed
/// to it but before it took it, it hands the permit on.
struct Waiter {
    receiver: Option<oneshot::Receiver<()>>,
    semaphore: Arc<FairSemaphore>,
}

impl Waiter {
    async fn turn(mut self) -> FairPermit {
        if let Some(receiver) = self.receiver.as_mut() {
            // The sender stays in the queue until a permit is handed over, so this only
            // ends with one.
            let _ = receiver.await;
        }
        self.receiver = None;
        FairPermit {
            semaphore: self.semaphore.clone(),
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Some(mut receiver) = self.receiver.take() {
            receiver.close();
            if receiver.try_recv().is_ok() {
                self.semaphore.release();
            }
        }
    }
}

impl Drop for FairPermit {
    fn drop(&mut self) {
        self.semaphore.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn the_campaign_with_the_least_work_is_served_first_and_equals_take_turns() {
        let host = Arc::new(FairSemaphore::new(1));
        let held = host.try_acquire().expect("a free permit");
        assert!(host.try_acquire().is_none(), "at its limit");
        let served = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // A blast of campaign 1 queued first, then campaign 2's two requests behind it.
        for (campaign, n) in [(1, 0), (1, 1), (1, 2), (1, 3), (2, 0), (2, 1)] {
            let (host, served) = (host.clone(), served.clone());
            tasks.push(tokio::spawn(async move {
                let permit = host.acquire(campaign).await;
                served.lock().push((campaign, n));
                drop(permit);
            }));
            tokio::task::yield_now().await;
        }
        assert_eq!(host.waiting(), 6);
        drop(held);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            *served.lock(),
            [(2, 0), (2, 1), (1, 0), (1, 1), (1, 2), (1, 3)],
            "campaign 2's two go before campaign 1's four"
        );
        assert!(host.try_acquire().is_some(), "the permit came back");
    }

    #[tokio::test]
    async fn a_campaign_arriving_behind_a_served_blast_goes_first() {
        let host = Arc::new(FairSemaphore::new(1));
        let mut held = host.try_acquire().unwrap();
        let served = Arc::new(Mutex::new(Vec::new()));
        let waiter = |campaign: i64, n: u32| {
            let (host, served) = (host.clone(), served.clone());
            tokio::spawn(async move {
                let permit = host.acquire(campaign).await;
                served.lock().push((campaign, n));
                permit
            })
        };
        // Campaign 1 waits with many, and is served three times...
        let blast: Vec<_> = (0..6).map(|n| waiter(1, n)).collect();
        tokio::task::yield_now().await;
        let mut blast = blast.into_iter();
        for _ in 0..3 {
            drop(held);
            held = blast.next().unwrap().await.unwrap();
        }
        // ...then campaign 2 arrives: its two go before campaign 1's next.
        let small: Vec<_> = (0..2).map(|n| waiter(2, n)).collect();
        tokio::task::yield_now().await;
        for task in small {
            drop(held);
            held = task.await.unwrap();
        }
        drop(held);
        for task in blast {
            drop(task.await.unwrap());
        }
        assert_eq!(
            *served.lock(),
            [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (1, 3), (1, 4), (1, 5)]
        );
        assert!(host.try_acquire().is_some(), "the permit came back");
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_passes_its_turn_on() {
        let host = Arc::new(FairSemaphore::new(1));
        let held = host.try_acquire().unwrap();
        let mut gone = Box::pin(host.acquire(1));
        assert!(gone.as_mut().now_or_never().is_none());
        let next = tokio::spawn({
            let host = host.clone();
            async move { drop(host.acquire(2).await) }
        });
        tokio::task::yield_now().await;
        drop(gone);
        drop(held);
        next.await.unwrap();
        assert!(
            host.try_acquire().is_some(),
            "no permit lost to the waiter that left"
        );
    }
}
