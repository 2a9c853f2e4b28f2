//! Liveness and readiness (docs/observability.md): `/healthz` answers while the process can
//! work (not after the Kafka producer's fatal error, which only a restart clears);
//! `/readyz` while it is able to work: every trigger consumer is a member of its group,
//! Redis answers, the producer (dead letters) is not failing and every configured topic
//! exists.
//!
//! Owning partitions is not part of it: with as many members as partitions, the pod a
//! rolling update adds, or an idle replica, owns none, and a readiness that waited for one
//! would hang the rollout and hold the PodDisruptionBudget at zero. Ownership is a gauge
//! (`webhook_partitions_assigned`) and an alert compares it with the topic's size.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[derive(Debug)]
pub struct Health {
    /// Trigger-topic members (one per event loop), and how many of them are in their group.
    members: AtomicUsize,
    joined: AtomicUsize,
    redis_up: AtomicBool,
    producer_up: AtomicBool,
    secret_key_ok: AtomicBool,
    missing_topics: Mutex<Vec<String>>,
    /// Why the process cannot go on (set once, cleared only by a restart).
    fatal: Mutex<Option<String>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            members: AtomicUsize::new(0),
            joined: AtomicUsize::new(0),
            redis_up: AtomicBool::new(false),
            // Up until a produce fails.
            producer_up: AtomicBool::new(true),
            // Up until a template cannot be decrypted with this replica's keys.
            secret_key_ok: AtomicBool::new(true),
            missing_topics: Mutex::new(Vec::new()),
            fatal: Mutex::new(None),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// Every trigger consumer is a member of its group (with or without partitions).
    pub kafka_joined: bool,
    pub redis_up: bool,
    pub producer_up: bool,
    /// False while a template's credentials are encrypted with a key this replica lacks.
    pub secret_key_ok: bool,
    /// Configured topics the cluster does not have.
    pub missing_topics: Vec<String>,
}

impl Health {
    /// A trigger-topic member was created; it is not in its group until it says so.
    pub fn member_created(&self) {
        self.members.fetch_add(1, Ordering::Relaxed);
    }

    /// A trigger-topic member joined its group (`true`: the group gave it an assignment,
    /// even an empty one) or left it (its session was lost, or it is closing).
    pub fn group_membership_changed(&self, joined: bool) {
        if joined {
            self.joined.fetch_add(1, Ordering::Relaxed);
        } else {
            self.joined.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn set_redis_up(&self, up: bool) {
        self.redis_up.store(up, Ordering::Relaxed);
    }

    /// The process cannot go on (`why`): liveness fails, so it is restarted.
    pub fn set_fatal(&self, why: String) {
        self.fatal.lock().get_or_insert(why);
    }

    /// Why the process cannot go on, if it cannot.
    pub fn fatal(&self) -> Option<String> {
        self.fatal.lock().clone()
    }

    pub fn set_producer_up(&self, up: bool) {
        self.producer_up.store(up, Ordering::Relaxed);
    }

    pub fn set_secret_key_ok(&self, ok: bool) {
        self.secret_key_ok.store(ok, Ordering::Relaxed);
    }

    pub fn set_missing_topics(&self, topics: Vec<String>) {
        *self.missing_topics.lock() = topics;
    }

    pub fn readiness(&self) -> Readiness {
        let members = self.members.load(Ordering::Relaxed);
        let kafka_joined = members > 0 && self.joined.load(Ordering::Relaxed) == members;
        let redis_up = self.redis_up.load(Ordering::Relaxed);
        let producer_up = self.producer_up.load(Ordering::Relaxed);
        let secret_key_ok = self.secret_key_ok.load(Ordering::Relaxed);
        let missing_topics = self.missing_topics.lock().clone();
        Readiness {
            ready: kafka_joined && redis_up && producer_up && secret_key_ok && missing_topics.is_empty(),
            kafka_joined,
            redis_up,
            producer_up,
            secret_key_ok,
            missing_topics,
        }
    }
}
