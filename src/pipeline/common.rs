//! What every delivery of one record shares, and the job of attempting one of them.

use super::attempt::Job;
use crate::event::TriggerEvent;
use crate::park::{FailedDelivery, History, Origin};
use crate::render::Delivery;
use crate::template::Prepared;
use crate::trace::TraceParent;

/// What every delivery of one record shares.
#[derive(Clone, Copy)]
pub(super) struct Common<'a> {
    pub(super) template: &'a Prepared,
    pub(super) event: &'a TriggerEvent,
    pub(super) origin: &'a Origin,
    pub(super) history: &'a History,
    pub(super) first_failed_at_ms: Option<u64>,
    pub(super) replayed: bool,
    pub(super) replay_of: Option<&'a str>,
    /// The retry tier the record was read from (0: the trigger topic).
    pub(super) tier: u32,
    /// The record's `consume` step: each attempt's parent.
    pub(super) trace: &'a TraceParent,
}

impl<'a> Common<'a> {
    /// A trigger event's deliveries, attempted for the first time.
    pub(super) fn fresh(
        template: &'a Prepared,
        event: &'a TriggerEvent,
        origin: &'a Origin,
        history: &'a History,
        trace: &'a TraceParent,
    ) -> Common<'a> {
        Common {
            template,
            event,
            origin,
            history,
            first_failed_at_ms: None,
            replayed: false,
            replay_of: None,
            tier: 0,
            trace,
        }
    }

    /// A failed delivery attempted again: its history, when it first failed, and whether
    /// it is a replay (of which letter).
    pub(super) fn retried(
        template: &'a Prepared,
        event: &'a TriggerEvent,
        origin: &'a Origin,
        failed: &'a FailedDelivery,
        first_failed_at_ms: Option<u64>,
        trace: &'a TraceParent,
    ) -> Common<'a> {
        Common {
            template,
            event,
            origin,
            history: &failed.history,
            first_failed_at_ms,
            replayed: failed.replayed,
            replay_of: failed.replay_of.as_deref(),
            tier: 0,
            trace,
        }
    }

    /// The job of attempting `delivery`, one of this record's.
    pub(super) fn job<'d>(&self, delivery: &'d Delivery) -> Job<'d>
    where
        'a: 'd,
    {
        Job {
            template: self.template,
            event: self.event,
            delivery,
            origin: self.origin,
            history: self.history.clone(),
            first_failed_at_ms: self.first_failed_at_ms,
            replayed: self.replayed,
            replay_of: self.replay_of,
            tier: self.tier,
            trace: self.trace,
        }
    }
}
