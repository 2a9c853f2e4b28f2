//! Label handles of the hot-path series, resolved once: `with_label_values` hashes the
//! labels on every call, a handle does not.

use std::sync::{OnceLock, RwLock};

use prometheus::{Histogram, IntCounter};

/// Label values of the hot-path series, each resolved once, when first used (so a series
/// appears in the exposition exactly when it would with `with_label_values`).
#[derive(Default)]
pub(super) struct Handles {
    /// `webhook_requests_total` by [`METHODS`] × [`STATUS_CLASSES`].
    pub(super) requests: [[OnceLock<IntCounter>; STATUS_CLASSES.len()]; METHODS.len()],
    /// `webhook_deliveries_total` by [`OUTCOMES`].
    pub(super) deliveries: [OnceLock<IntCounter>; OUTCOMES.len()],
    /// `webhook_template_cache_requests_total`: hit, miss.
    pub(super) template_cache: [OnceLock<IntCounter>; 2],
    /// Per topic: `webhook_events_consumed_total` and `webhook_event_duration_seconds`.
    topics: RwLock<Vec<TopicHandles>>,
}

pub(super) struct TopicHandles {
    topic: Box<str>,
    pub(super) consumed: OnceLock<IntCounter>,
    pub(super) duration: OnceLock<Histogram>,
}

pub(super) const METHODS: [&str; 4] = ["POST", "GET", "PUT", "DELETE"];
pub(super) const STATUS_CLASSES: [&str; 7] = ["1xx", "2xx", "3xx", "4xx", "5xx", "timeout", "error"];
pub(super) const OUTCOMES: [&str; 3] = ["delivered", "retried", "dead_lettered"];
/// Topics given handles; others (there are a handful) go through `with_label_values`.
const MAX_TOPIC_HANDLES: usize = 16;

pub(super) fn slot(values: &[&str], value: &str) -> Option<usize> {
    values.iter().position(|v| *v == value)
}

impl Handles {
    /// Runs `hit` on the handles of `topic` (made on first use), or `miss` once there are
    /// too many topics to keep handles for.
    pub(super) fn topic(&self, topic: &str, hit: impl Fn(&TopicHandles), miss: impl FnOnce()) {
        let find = |handles: &[TopicHandles]| handles.iter().position(|h| &*h.topic == topic);
        {
            let handles = self.topics.read().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = find(&handles[..]) {
                return hit(&handles[i]);
            }
        }
        let mut handles = self.topics.write().unwrap_or_else(|p| p.into_inner());
        if find(&handles[..]).is_none() && handles.len() < MAX_TOPIC_HANDLES {
            handles.push(TopicHandles {
                topic: topic.into(),
                consumed: OnceLock::new(),
                duration: OnceLock::new(),
            });
        }
        match find(&handles[..]) {
            Some(i) => hit(&handles[i]),
            None => miss(),
        }
    }
}
