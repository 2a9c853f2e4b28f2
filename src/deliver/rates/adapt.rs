//! Adapting a template's rate to its destination's 429s (see [`super`]'s doc): what was
//! accepted lately, and the rate decided a second at a time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long adaptation watches answers before it decides: quotas are mostly per second, so
/// what a destination accepted over a second is what it takes.
const WINDOW: Duration = Duration::from_secs(1);
/// The lowest effective rate adaptation goes to.
pub(super) const MIN_ADAPTED: f64 = 0.5;

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

/// A template's rate after 429 answers (see the module's doc).
#[derive(Clone)]
pub(super) struct Adapt {
    pub(super) effective: f64,
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
    pub(super) waited: bool,
    /// Seconds with traffic in a row in which the adapted rate held nothing back.
    idle: u32,
    /// When the rate last changed: answers to requests sent before it say nothing of it.
    changed_at: std::time::Instant,
}

/// Seconds of traffic the adapted rate holds nothing back before adaptation ends.
const IDLE_TO_END: u32 = 300;

impl Adapt {
    /// The first 429 (in the first second watched): until that second ends, the configured
    /// rate holds (none: no limit yet).
    pub(super) fn start(configured: Option<f64>, now: std::time::Instant) -> Adapt {
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
    pub(super) fn answer(
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
