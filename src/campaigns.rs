//! Campaign control (docs/how-it-works.md, "Pausing and cancelling a campaign"): a campaign
//! (its `targetId`) is active, paused or cancelled. Only the campaigns that are not active
//! are kept, in the Redis hash `{prefix}campaign-states` (`targetId` → `"paused <ms>"` or
//! `"cancelled <ms>"`, the moment the state began); a change is published on
//! `{prefix}campaign-changed`, and every replica reloads the hash when it hears one (and
//! every [`RELOAD_EVERY`], and after its subscription was lost), so a pause reaches every
//! replica within a second.
//!
//! What the states do is the pipeline's: a paused campaign's deliveries are parked once on
//! the hold topic and held there (or in the retry consumer's memory) until it is resumed,
//! without an attempt; a cancelled campaign's are dead-lettered as `cancelled`. This module
//! only keeps the states, read on every delivery ([`Campaigns::state`]: a map lookup, none
//! at all while every campaign is active).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use redis::AsyncCommands;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::backoff::Backoff;
use crate::park::now_ms;
use crate::redis_link::{RedisConn, RedisLink};

/// What a campaign's deliveries do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active,
    /// Held without an attempt since `since_ms` (ms since the epoch).
    Paused {
        since_ms: u64,
    },
    /// Dead-lettered as `cancelled` since `since_ms`.
    Cancelled {
        since_ms: u64,
    },
}

impl State {
    /// `active`, `paused` or `cancelled`: the stats' `state`.
    pub fn name(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Paused { .. } => "paused",
            State::Cancelled { .. } => "cancelled",
        }
    }

    /// Since when the campaign is paused or cancelled.
    pub fn since_ms(self) -> Option<u64> {
        match self {
            State::Active => None,
            State::Paused { since_ms } | State::Cancelled { since_ms } => Some(since_ms),
        }
    }

    /// The stored form (`"paused 1733650000000"`); `None` for active.
    fn stored(self) -> Option<String> {
        self.since_ms().map(|since| format!("{} {since}", self.name()))
    }

    /// A stored value read back; `None` for anything else (written by hand, say).
    fn parse(text: &str) -> Option<State> {
        let (name, since) = text.split_once(' ')?;
        let since_ms = since.parse().ok()?;
        match name {
            "paused" => Some(State::Paused { since_ms }),
            "cancelled" => Some(State::Cancelled { since_ms }),
            _ => None,
        }
    }
}

/// What an operator asks of a campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Pause,
    Resume,
    Cancel,
}

impl Command {
    /// The state after the command, from `now`: pausing a paused campaign (or cancelling a
    /// cancelled one) keeps when it began.
    fn apply(self, current: State, now_ms: u64) -> State {
        match (self, current) {
            (Command::Resume, _) => State::Active,
            (Command::Pause, State::Paused { .. }) | (Command::Cancel, State::Cancelled { .. }) => current,
            (Command::Pause, _) => State::Paused { since_ms: now_ms },
            (Command::Cancel, _) => State::Cancelled { since_ms: now_ms },
        }
    }
}

/// A campaign's control state, as the API answers it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CampaignState {
    #[serde(rename = "targetId")]
    pub target_id: i64,
    /// `active`, `paused` or `cancelled`.
    pub state: &'static str,
    /// When the campaign was paused or cancelled (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
}

impl CampaignState {
    pub fn of(target_id: i64, state: State) -> CampaignState {
        CampaignState {
            target_id,
            state: state.name(),
            since: state.since_ms().map(crate::stats::rfc3339),
        }
    }
}

/// Campaigns paused or cancelled at once, at most: the states are read whole by every
/// replica, so they are bounded; a pause beyond this is refused ([`ControlError::TooMany`]).
pub const MAX_CONTROLLED: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{MAX_CONTROLLED} campaigns are paused or cancelled already; resume some first")]
    TooMany,
    #[error("campaign states are unavailable: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Every campaign that is not active, shared by the event loops, the retry consumer and the
/// admin API.
pub struct Campaigns {
    states: RwLock<crate::FastMap<i64, State>>,
    /// Changes whenever a state changes (the retry consumer releases what it holds).
    changed: watch::Sender<u64>,
    /// Whether the states were read once (until then nothing may be sent).
    loaded: AtomicBool,
    /// Where the states live: Redis (`None`: this process only, the demo).
    redis: Option<(RedisConn, String)>,
    /// The longest a campaign stays paused: its held deliveries then expire.
    pub max_pause: Duration,
}

impl Campaigns {
    /// States kept in this process only (the demo, which has no Redis).
    pub fn in_memory(max_pause: Duration) -> Arc<Campaigns> {
        Arc::new(Campaigns::with(None, max_pause, true))
    }

    /// States in Redis under `prefix`; read them with [`Campaigns::reload`] before use.
    pub fn redis(conn: RedisConn, prefix: &str, max_pause: Duration) -> Arc<Campaigns> {
        Arc::new(Campaigns::with(
            Some((conn, prefix.to_string())),
            max_pause,
            false,
        ))
    }

    fn with(redis: Option<(RedisConn, String)>, max_pause: Duration, loaded: bool) -> Campaigns {
        Campaigns {
            states: RwLock::default(),
            changed: watch::Sender::new(0),
            loaded: AtomicBool::new(loaded),
            redis,
            max_pause,
        }
    }

    /// Campaign `target_id`'s state, on every delivery.
    pub fn state(&self, target_id: i64) -> State {
        let states = self.states.read();
        if states.is_empty() {
            return State::Active;
        }
        states.get(&target_id).copied().unwrap_or(State::Active)
    }

    /// Whether any campaign is paused or cancelled.
    pub fn any_controlled(&self) -> bool {
        !self.states.read().is_empty()
    }

    /// Whether the states were read at least once.
    pub fn loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Changes whenever a campaign's state does.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Applies `command` to campaign `target_id` (in Redis, told to every replica) and
    /// answers the new state.
    pub async fn control(&self, target_id: i64, command: Command) -> Result<State, ControlError> {
        let Some((conn, prefix)) = &self.redis else {
            let mut states = self.states.write();
            let current = states.get(&target_id).copied().unwrap_or(State::Active);
            let next = command.apply(current, now_ms());
            if next != State::Active && current == State::Active && states.len() >= MAX_CONTROLLED {
                return Err(ControlError::TooMany);
            }
            set(&mut states, target_id, next);
            drop(states);
            self.changed.send_modify(|n| *n += 1);
            return Ok(next);
        };
        let mut conn = conn.clone();
        let key = states_key(prefix);
        let current: Option<String> = conn.hget(&key, target_id).await?;
        let current = current.as_deref().and_then(State::parse).unwrap_or(State::Active);
        let next = command.apply(current, now_ms());
        if next != current {
            match next.stored() {
                Some(stored) => {
                    let count: usize = conn.hlen(&key).await?;
                    if current == State::Active && count >= MAX_CONTROLLED {
                        return Err(ControlError::TooMany);
                    }
                    let () = conn.hset(&key, target_id, stored).await?;
                }
                None => {
                    let _: i64 = conn.hdel(&key, target_id).await?;
                }
            }
            let _: i64 = conn.publish(changed_channel(prefix), target_id).await?;
        }
        // This replica at once; the others when they hear the change.
        set(&mut self.states.write(), target_id, next);
        self.changed.send_modify(|n| *n += 1);
        Ok(next)
    }

    /// Reads every state from Redis, replacing what this process knew.
    pub async fn reload(&self) -> redis::RedisResult<()> {
        let Some((conn, prefix)) = &self.redis else {
            return Ok(());
        };
        // Read as text: a field written by hand that is not a campaign is skipped, not an
        // error that would keep every later change from being read.
        let stored: Vec<(String, String)> = conn.clone().hgetall(states_key(prefix)).await?;
        let mut states = crate::FastMap::default();
        for (target_id, text) in stored.into_iter().take(MAX_CONTROLLED) {
            if let (Ok(target_id), Some(state)) = (target_id.parse(), State::parse(&text)) {
                set(&mut states, target_id, state);
            }
        }
        let changed = *self.states.read() != states;
        *self.states.write() = states;
        self.loaded.store(true, Ordering::Release);
        if changed {
            self.changed.send_modify(|n| *n += 1);
        }
        Ok(())
    }
}

fn set(states: &mut crate::FastMap<i64, State>, target_id: i64, state: State) {
    match state {
        State::Active => states.remove(&target_id),
        other => states.insert(target_id, other),
    };
}

fn states_key(prefix: &str) -> String {
    format!("{prefix}campaign-states")
}

fn changed_channel(prefix: &str) -> String {
    format!("{prefix}campaign-changed")
}

/// How often the states are read again even when no change was heard: a publication lost
/// while this replica reconnected is made up for within this.
pub const RELOAD_EVERY: Duration = Duration::from_secs(30);

/// Between attempts to read or subscribe while Redis is down: doubling from 100 ms to 5 s.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// Reads the states until they are read once (waiting while Redis is down); `false` when
/// `stop` came first.
pub async fn load(campaigns: &Campaigns, stop: &CancellationToken) -> bool {
    let mut failures = 0;
    loop {
        match campaigns.reload().await {
            Ok(()) => return true,
            Err(err) => {
                if let Some(suppressed) = crate::telemetry::limited("campaign-states") {
                    warn!(error = %err, suppressed, "cannot read the campaign states; waiting before consuming");
                }
            }
        }
        failures += 1;
        if !BACKOFF.wait(failures, stop).await {
            return false;
        }
    }
}

/// Keeps `campaigns` in step with Redis until `stop`: reloads when a change is published,
/// every [`RELOAD_EVERY`], and after a lost subscription.
pub async fn watch_changes(link: RedisLink, campaigns: Arc<Campaigns>, stop: CancellationToken) {
    use futures::StreamExt;
    let Some((_, prefix)) = &campaigns.redis else {
        return;
    };
    let channel = changed_channel(prefix);
    let mut failures = 0;
    loop {
        let subscribed = tokio::select! {
            _ = stop.cancelled() => return,
            subscribed = link.subscribe(&channel) => subscribed,
        };
        if let Ok(mut messages) = subscribed {
            failures = 0;
            let mut every = tokio::time::interval(RELOAD_EVERY);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = every.tick() => {}
                    message = messages.next() => if message.is_none() { break },
                }
                if let Err(err) = campaigns.reload().await
                    && let Some(suppressed) = crate::telemetry::limited("campaign-states")
                {
                    warn!(error = %err, suppressed, "cannot read the campaign states; the last ones read hold");
                }
            }
        } else if let Some(suppressed) = crate::telemetry::limited("campaign-changes-subscribe") {
            warn!(suppressed, "cannot subscribe to campaign changes; retrying");
        }
        failures += 1;
        if !BACKOFF.wait(failures, &stop).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_keep_when_a_state_began_and_resume_always_ends_it() {
        let paused = State::Paused { since_ms: 5 };
        assert_eq!(
            Command::Pause.apply(State::Active, 9),
            State::Paused { since_ms: 9 }
        );
        assert_eq!(
            Command::Pause.apply(paused, 9),
            paused,
            "a second pause keeps the first's start"
        );
        assert_eq!(Command::Cancel.apply(paused, 9), State::Cancelled { since_ms: 9 });
        assert_eq!(
            Command::Pause.apply(State::Cancelled { since_ms: 5 }, 9),
            State::Paused { since_ms: 9 }
        );
        assert_eq!(Command::Resume.apply(paused, 9), State::Active);
        assert_eq!(Command::Resume.apply(State::Active, 9), State::Active);
    }

    #[test]
    fn stored_states_read_back_and_anything_else_is_ignored() {
        for state in [
            State::Paused {
                since_ms: 1_733_650_000_000,
            },
            State::Cancelled { since_ms: 0 },
        ] {
            assert_eq!(State::parse(&state.stored().unwrap()), Some(state));
        }
        assert_eq!(State::Active.stored(), None);
        for junk in ["", "paused", "paused x", "stopped 5", "paused -1"] {
            assert_eq!(State::parse(junk), None, "{junk:?}");
        }
    }

    #[tokio::test]
    async fn in_memory_states_are_read_at_once_and_watchers_hear_changes() {
        let campaigns = Campaigns::in_memory(Duration::from_secs(60));
        let mut changes = campaigns.watch();
        assert_eq!(campaigns.state(7), State::Active);
        let paused = campaigns.control(7, Command::Pause).await.unwrap();
        assert!(matches!(paused, State::Paused { .. }));
        assert_eq!(campaigns.state(7), paused);
        assert_eq!(campaigns.state(8), State::Active, "other campaigns stay active");
        assert!(changes.has_changed().unwrap());
        changes.borrow_and_update();
        campaigns.control(7, Command::Resume).await.unwrap();
        assert_eq!(campaigns.state(7), State::Active);
        assert!(!campaigns.any_controlled());
        assert!(changes.has_changed().unwrap());
    }
}
