//! Label handles of the hot-path series, resolved once: `with_label_values` hashes the
//! labels on every call, a handle does not.

use std::sync::{OnceLock, RwLock};

use prometheus::{Histogram, IntCounter};

/// Label values of the hot-path series, each resolved once, when first used (so a series
/// appears in the exposition exactly when it would with `with_label_values`).
#[derive(Default)]
pub(super) struct Handles {
    /// `webhook_requests_total` by [`MethodLabel`] × [`StatusClass`].
    pub(super) requests: [[OnceLock<IntCounter>; StatusClass::ALL.len()]; MethodLabel::ALL.len()],
    /// `webhook_deliveries_total` by [`Outcome`].
    pub(super) deliveries: [OnceLock<IntCounter>; Outcome::ALL.len()],
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

/// The `method` label of `webhook_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodLabel {
    Post,
    Get,
    Put,
    Delete,
}

impl MethodLabel {
    pub const ALL: [MethodLabel; 4] = [
        MethodLabel::Post,
        MethodLabel::Get,
        MethodLabel::Put,
        MethodLabel::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MethodLabel::Post => "POST",
            MethodLabel::Get => "GET",
            MethodLabel::Put => "PUT",
            MethodLabel::Delete => "DELETE",
        }
    }
}

/// The `status_class` label of `webhook_requests_total`: the answer's class, or why there
/// was none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Informational,
    Success,
    Redirection,
    ClientError,
    ServerError,
    Timeout,
    Error,
}

impl StatusClass {
    pub const ALL: [StatusClass; 7] = [
        StatusClass::Informational,
        StatusClass::Success,
        StatusClass::Redirection,
        StatusClass::ClientError,
        StatusClass::ServerError,
        StatusClass::Timeout,
        StatusClass::Error,
    ];

    /// The class of an HTTP status code.
    pub fn of(code: u16) -> StatusClass {
        match code {
            100..=199 => StatusClass::Informational,
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirection,
            400..=499 => StatusClass::ClientError,
            _ => StatusClass::ServerError,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StatusClass::Informational => "1xx",
            StatusClass::Success => "2xx",
            StatusClass::Redirection => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
            StatusClass::Timeout => "timeout",
            StatusClass::Error => "error",
        }
    }
}

/// The `outcome` label of `webhook_deliveries_total`: how a delivery's attempt settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Retried,
    DeadLettered,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Delivered, Outcome::Retried, Outcome::DeadLettered];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retried => "retried",
            Outcome::DeadLettered => "dead_lettered",
        }
    }
}

/// Topics given handles; others (there are a handful) go through `with_label_values`.
const MAX_TOPIC_HANDLES: usize = 16;

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
