//! Liveness and readiness (§7): `/healthz` answers while the process runs; `/readyz` only
//! while the consumer holds a Kafka assignment, Redis answers and the producer (dead
//! letters) is not failing.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug)]
pub struct Health {
    kafka_assigned: AtomicBool,
    redis_up: AtomicBool,
    producer_up: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            kafka_assigned: AtomicBool::new(false),
            redis_up: AtomicBool::new(false),
            // Up until a produce fails.
            producer_up: AtomicBool::new(true),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub kafka_assigned: bool,
    pub redis_up: bool,
    pub producer_up: bool,
}

impl Health {
    pub fn set_kafka_assigned(&self, assigned: bool) {
        self.kafka_assigned.store(assigned, Ordering::Relaxed);
    }

    pub fn set_redis_up(&self, up: bool) {
        self.redis_up.store(up, Ordering::Relaxed);
    }

    pub fn set_producer_up(&self, up: bool) {
        self.producer_up.store(up, Ordering::Relaxed);
    }

    pub fn readiness(&self) -> Readiness {
        let kafka_assigned = self.kafka_assigned.load(Ordering::Relaxed);
        let redis_up = self.redis_up.load(Ordering::Relaxed);
        let producer_up = self.producer_up.load(Ordering::Relaxed);
        Readiness {
            ready: kafka_assigned && redis_up && producer_up,
            kafka_assigned,
            redis_up,
            producer_up,
        }
    }
}
