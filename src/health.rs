//! Liveness and readiness (§7): `/healthz` answers while the process runs; `/readyz` only
//! while the consumer holds a Kafka assignment and Redis answers.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Health {
    kafka_assigned: AtomicBool,
    redis_up: AtomicBool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub kafka_assigned: bool,
    pub redis_up: bool,
}

impl Health {
    pub fn set_kafka_assigned(&self, assigned: bool) {
        self.kafka_assigned.store(assigned, Ordering::Relaxed);
    }

    pub fn set_redis_up(&self, up: bool) {
        self.redis_up.store(up, Ordering::Relaxed);
    }

    pub fn readiness(&self) -> Readiness {
        let kafka_assigned = self.kafka_assigned.load(Ordering::Relaxed);
        let redis_up = self.redis_up.load(Ordering::Relaxed);
        Readiness {
            ready: kafka_assigned && redis_up,
            kafka_assigned,
            redis_up,
        }
    }
}
