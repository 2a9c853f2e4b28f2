//! Reading the metrics back: the Prometheus text exposition, counter values for summaries
//! and tests, and latency quantiles estimated from the histogram buckets.

use prometheus::{Encoder, TextEncoder, core::Collector};

use super::Metrics;

impl Metrics {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding never fails");
        String::from_utf8(out).expect("exposition is UTF-8")
    }
    pub fn circuit_transitions(&self, to: &str) -> u64 {
        self.circuits.transitions.with_label_values(&[to]).get()
    }

    /// Counter value by label values, for summaries and tests.
    pub fn deliveries(&self, outcome: &str) -> u64 {
        self.outcomes.deliveries.with_label_values(&[outcome]).get()
    }

    pub fn invalid_events(&self, reason: &str) -> u64 {
        self.events.invalid.with_label_values(&[reason]).get()
    }

    pub fn dead_letters(&self, reason: &str) -> u64 {
        self.outcomes.dead_letters.with_label_values(&[reason]).get()
    }

    /// Approximate latency quantile from the histogram buckets (linear within a bucket,
    /// as PromQL's `histogram_quantile`).
    pub fn request_latency_quantile(&self, q: f64) -> Option<f64> {
        let families = self.requests.duration.collect();
        let h = families.first()?.get_metric().first()?.get_histogram();
        let total = h.get_sample_count();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let (mut lower, mut below) = (0.0, 0u64);
        for bucket in h.get_bucket() {
            let count = bucket.cumulative_count();
            if count as f64 >= rank {
                let inside = (count - below) as f64;
                let fraction = if inside > 0.0 {
                    (rank - below as f64) / inside
                } else {
                    1.0
                };
                return Some(lower + (bucket.upper_bound() - lower) * fraction);
            }
            lower = bucket.upper_bound();
            below = count;
        }
        Some(lower)
    }

    pub fn request_count(&self) -> u64 {
        self.requests.duration.get_sample_count()
    }
}
