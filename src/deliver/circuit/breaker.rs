//! One destination's breaker, a pure state machine over explicit instants.
//!
//! - **Closed**: every request goes; outcomes are counted over a sliding window of
//!   `window_seconds` (two buckets, the older one weighed by how much of it is still in the
//!   window). The breaker opens only when the window holds at least `failure_threshold`
//!   failures *and* they are at least `failure_rate_percent` of its calls: a destination
//!   that answers most requests is never cut off, however busy (resilience4j's and Envoy's
//!   rule, not "N failures in a row", which concurrent requests reach on a destination
//!   failing one request in ten).
//! - **Open** for `cooldown_seconds`: requests are refused, told when it half-opens.
//! - **HalfOpen**: [`PROBES`] requests go through; their success ratio decides (closed once
//!   enough succeeded, open again once too many failed). A probe dropped unanswered lets
//!   another go.
//! - **Ramp** after closing: for [`ramp`] of the cool-down the share of requests let
//!   through grows from a tenth to all, so a backlog parked while it was open does not hit
//!   the destination at once.

use std::time::{Duration, Instant};

use crate::template::BreakerSettings;

/// Probes a half-open breaker lets through; their outcomes decide.
pub const PROBES: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breaker {
    Closed {
        window: Window,
        /// Since when traffic ramps back up after the breaker closed.
        ramp: Option<Ramp>,
    },
    Open {
        until: Instant,
    },
    HalfOpen {
        /// Probes let through and not answered yet.
        out: u32,
        passed: u32,
        failed: u32,
    },
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker::Closed {
            window: Window::default(),
            ramp: None,
        }
    }
}

/// Outcomes over a sliding window: the current bucket and the one before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    start: Option<Instant>,
    calls: u32,
    failures: u32,
    earlier_calls: u32,
    earlier_failures: u32,
}

impl Window {
    fn add(&mut self, failed: bool, now: Instant, length: Duration) {
        let start = *self.start.get_or_insert(now);
        let age = now.saturating_duration_since(start);
        if age >= length {
            let (calls, failures) = if age < length * 2 {
                (self.calls, self.failures)
            } else {
                (0, 0)
            };
            *self = Window {
                start: Some(if age < length * 2 { start + length } else { now }),
                calls: 0,
                failures: 0,
                earlier_calls: calls,
                earlier_failures: failures,
            };
        }
        self.calls = self.calls.saturating_add(1);
        self.failures = self.failures.saturating_add(u32::from(failed));
    }

    /// Calls and failures in the last `length`, the earlier bucket weighed by its share.
    fn estimate(&self, now: Instant, length: Duration) -> (f64, f64) {
        let Some(start) = self.start else {
            return (0.0, 0.0);
        };
        let into = now.saturating_duration_since(start).as_secs_f64() / length.as_secs_f64().max(0.001);
        let earlier = (1.0 - into).clamp(0.0, 1.0);
        (
            f64::from(self.calls) + f64::from(self.earlier_calls) * earlier,
            f64::from(self.failures) + f64::from(self.earlier_failures) * earlier,
        )
    }

    /// When nothing in it counts any more (both buckets older than `length`).
    fn last_counted(&self, length: Duration) -> Option<Instant> {
        self.start.map(|start| start + length * 2)
    }
}

/// Traffic growing back after the breaker closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ramp {
    since: Instant,
    length: Duration,
    /// Thousandths of a request earned: each request adds the share let through now, and
    /// one goes for every thousand (so a share of 0.3 lets 3 in 10 through, evenly).
    credit: u32,
}

/// How long traffic ramps up after closing: the cool-down, within 5 s to a minute.
pub fn ramp(settings: BreakerSettings) -> Duration {
    Duration::from_secs(settings.cooldown_seconds).clamp(Duration::from_secs(5), Duration::from_secs(60))
}

/// Whether a request may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Go,
    /// One of the requests let through while half-open; its result counts.
    Probe,
    /// Refused: try again in `reopens_in` (the cool-down left; zero while probes decide
    /// or traffic ramps up).
    Refuse {
        reopens_in: Duration,
    },
}

/// A state the breaker moved to (the `to` label of `webhook_circuit_transitions_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened,
    HalfOpened,
    Closed,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Opened => "open",
            Transition::HalfOpened => "half_open",
            Transition::Closed => "closed",
        }
    }
}

/// The share of requests a ramp lets through `into` it: a tenth at first, all at the end.
fn ramp_share(into: Duration, length: Duration) -> f64 {
    (into.as_secs_f64() / length.as_secs_f64().max(0.001)).clamp(0.1, 1.0)
}

impl Breaker {
    /// May a request go now? Moves an open breaker whose cool-down is over to half-open.
    pub fn admit(&mut self, now: Instant) -> (Admit, Option<Transition>) {
        match self {
            Breaker::Closed { ramp, .. } => {
                let Some(r) = ramp else {
                    return (Admit::Go, None);
                };
                let into = now.saturating_duration_since(r.since);
                if into >= r.length {
                    *ramp = None;
                    return (Admit::Go, None);
                }
                r.credit += (ramp_share(into, r.length) * 1000.0) as u32;
                if r.credit >= 1000 {
                    r.credit -= 1000;
                    (Admit::Go, None)
                } else {
                    (
                        Admit::Refuse {
                            reopens_in: Duration::ZERO,
                        },
                        None,
                    )
                }
            }
            Breaker::Open { until } if now >= *until => {
                *self = Breaker::HalfOpen {
                    out: 1,
                    passed: 0,
                    failed: 0,
                };
                (Admit::Probe, Some(Transition::HalfOpened))
            }
            Breaker::Open { until } => (
                Admit::Refuse {
                    reopens_in: until.saturating_duration_since(now),
                },
                None,
            ),
            Breaker::HalfOpen { out, passed, failed } => {
                if *out + *passed + *failed < PROBES {
                    *out += 1;
                    (Admit::Probe, None)
                } else {
                    (
                        Admit::Refuse {
                            reopens_in: Duration::ZERO,
                        },
                        None,
                    )
                }
            }
        }
    }

    /// A probe went away without an answer: another may go in its place.
    pub fn abandon_probe(&mut self) {
        if let Breaker::HalfOpen { out, .. } = self {
            *out = out.saturating_sub(1);
        }
    }

    /// Records a request's outcome (`failed`: timeout, connection error, 5xx).
    pub fn record(
        &mut self,
        failed: bool,
        probe: bool,
        now: Instant,
        settings: BreakerSettings,
    ) -> Option<Transition> {
        let cooldown = Duration::from_secs(settings.cooldown_seconds);
        let open = Breaker::Open {
            until: now.checked_add(cooldown).unwrap_or(now),
        };
        match self {
            Breaker::HalfOpen {
                out,
                passed,
                failed: failures,
            } if probe => {
                *out = out.saturating_sub(1);
                if failed {
                    *failures += 1;
                } else {
                    *passed += 1;
                }
                // Enough successes to close, or too many failures to ever have them.
                let needed = probes_to_close(settings);
                if *passed >= needed {
                    *self = Breaker::Closed {
                        window: Window::default(),
                        ramp: Some(Ramp {
                            since: now,
                            length: ramp(settings),
                            credit: 0,
                        }),
                    };
                    Some(Transition::Closed)
                } else if *failures > PROBES - needed {
                    *self = open;
                    Some(Transition::Opened)
                } else {
                    None
                }
            }
            Breaker::Closed { window, .. } => {
                let length = Duration::from_secs(settings.window_seconds);
                window.add(failed, now, length);
                let (calls, failures) = window.estimate(now, length);
                let rate = f64::from(settings.failure_rate_percent) / 100.0;
                if failed && failures >= f64::from(settings.failure_threshold) && failures >= rate * calls {
                    *self = open;
                    Some(Transition::Opened)
                } else {
                    None
                }
            }
            // Answers of requests that started before the breaker opened (or a non-probe
            // while half-open) change nothing.
            _ => None,
        }
    }

    /// Whether the breaker holds nothing a later request depends on, now.
    pub fn idle(&self, now: Instant, longest_window: Duration) -> bool {
        match self {
            Breaker::Closed { window, ramp } => {
                ramp.is_none_or(|r| now.saturating_duration_since(r.since) >= r.length)
                    && window.last_counted(longest_window).is_none_or(|at| now >= at)
            }
            _ => false,
        }
    }
}

/// Probe successes that close a half-open breaker: more than the failure rate allows.
fn probes_to_close(settings: BreakerSettings) -> u32 {
    let may_fail = PROBES * settings.failure_rate_percent.min(100) / 100;
    (PROBES - may_fail).max(1)
}

#[cfg(test)]
mod tests;
