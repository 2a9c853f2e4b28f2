//! The deliveries of one event as an iterator, each made when it is taken: chunks that
//! share one rendered URL, headers and key_values write their body then; many profiles of a
//! per-profile template, or many chunks of a body template, are rendered (again) then. What they all weigh is known before the
//! first is taken, so the event's cap and errors still come first.

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde::Serialize;
use url::Url;

use super::{
    Body, BodyKeyValues, Budget, Delivery, EventKeyValues, IDEMPOTENCY_KEY, JSON, RenderError, chunk_context,
    context, delivery, header_safe, render_one, rendered_bytes,
};
use crate::event::TriggerEvent;
use crate::template::Prepared;

/// The deliveries of one event, in chunk order.
pub struct Deliveries<'a>(pub(super) Inner<'a>);

pub(super) enum Inner<'a> {
    /// Rendered already: single chunks, and templates rendered per profile or per chunk
    /// with up to [`RENDER_AHEAD`] requests.
    Ready(std::vec::IntoIter<Delivery>),
    /// Chunks sharing one rendered URL, headers and key_values; bodies written when taken.
    Shared(Box<SharedChunks<'a>>),
    /// Many requests rendered one by one, each (again) when taken.
    OneByOne(Box<OneByOne<'a>>),
}

impl Iterator for Deliveries<'_> {
    type Item = Delivery;

    fn next(&mut self) -> Option<Delivery> {
        match &mut self.0 {
            Inner::Ready(ready) => ready.next(),
            Inner::Shared(shared) => shared.next(),
            // Rendering is deterministic and every request rendered once already, so this
            // cannot fail; if it ever did, the record's task panics and the record is
            // dead-lettered whole as internal_error, never lost.
            Inner::OneByOne(each) => each
                .next()
                .map(|made| made.expect("a request that rendered once renders again")),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = match &self.0 {
            Inner::Ready(ready) => ready.len(),
            Inner::Shared(shared) => shared.chunks - shared.next,
            Inner::OneByOne(each) => each.requests() - each.next,
        };
        (left, Some(left))
    }
}

impl ExactSizeIterator for Deliveries<'_> {}

/// How many of `count` requests weighing `total` together fit in `bytes` (at least one).
fn within(bytes: usize, total: usize, count: usize) -> usize {
    let each = total.div_ceil(count.max(1)).max(1);
    (bytes / each).clamp(1, count.max(1))
}

impl Deliveries<'_> {
    /// Bytes rendered already and alive while the event is sent: every delivery when they
    /// were all made up front, else what the chunks share.
    pub fn rendered_already(&self) -> usize {
        match &self.0 {
            Inner::Ready(ready) => ready.as_slice().iter().map(rendered_bytes).sum(),
            Inner::Shared(shared) => shared.kept,
            Inner::OneByOne(_) => 0,
        }
    }

    /// Whether each delivery is rendered when it is taken (and should be counted from then).
    pub fn made_as_taken(&self) -> bool {
        !matches!(self.0, Inner::Ready(_))
    }

    /// How many of these may be made and held at once so that together they weigh about
    /// `bytes` at most (at least one; all of them when they are rendered already).
    pub fn how_many_within(&self, bytes: usize) -> usize {
        match &self.0 {
            Inner::Ready(ready) => ready.len().max(1),
            Inner::Shared(shared) => within(bytes, shared.total, shared.chunks),
            Inner::OneByOne(each) => within(bytes, each.total, each.requests()),
        }
    }
}

/// Events of at most this many requests rendered one by one are rendered before the first
/// request; larger ones are rendered twice (checked, then made as taken) to bound their
/// memory.
pub(super) const RENDER_AHEAD: usize = 64;

/// What each request of a [`OneByOne`] carries.
#[derive(Clone, Copy)]
pub(super) enum Unit {
    /// One profile, read as `profile` (the URL, a header or the body uses `profile.`).
    Profile,
    /// A chunk of `size` profiles, read as `profiles` by a body template.
    Chunk { size: usize, chunks: usize },
}

/// Requests rendered one by one, each in its own context.
pub(super) struct OneByOne<'a> {
    pub(super) prepared: &'a Prepared,
    pub(super) event: &'a TriggerEvent,
    pub(super) first_chunk: usize,
    /// The event's key_values, for the contexts and bodies.
    pub(super) key_values: EventKeyValues<'a>,
    pub(super) unit: Unit,
    pub(super) next: usize,
    /// What all the requests weigh together, once weighed.
    pub(super) total: usize,
}

impl<'a> OneByOne<'a> {
    /// How many requests there are.
    fn requests(&self) -> usize {
        match self.unit {
            Unit::Profile => self.event.profiles.len(),
            Unit::Chunk { chunks, .. } => chunks,
        }
    }

    /// Every request rendered now when there are few, else each rendered and weighed now
    /// (so a bad one or the cap still fails the event before anything is sent) and made
    /// again as taken.
    pub(super) fn render(mut self, budget: &mut Budget) -> Result<Deliveries<'a>, RenderError> {
        if self.requests() <= RENDER_AHEAD {
            let ready = self
                .by_ref()
                .map(|d| budget.spend(d?))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Deliveries(Inner::Ready(ready.into_iter())));
        }
        let mut total = 0;
        for delivery in self.by_ref() {
            total += rendered_bytes(&budget.spend(delivery?)?);
        }
        // The check pass used this one up; the deliveries are made by a fresh start.
        Ok(Deliveries(Inner::OneByOne(Box::new(OneByOne {
            next: 0,
            total,
            ..self
        }))))
    }
}

impl Iterator for OneByOne<'_> {
    type Item = Result<Delivery, RenderError>;

    fn next(&mut self) -> Option<Self::Item> {
        let i = self.next;
        if i == self.requests() {
            return None;
        }
        self.next += 1;
        let key_values = self.key_values.map.as_ref();
        let (range, ctx) = match self.unit {
            Unit::Profile => (
                i..i + 1,
                context(self.event, Some((i, &self.event.profiles[i])), key_values),
            ),
            Unit::Chunk { size, .. } => {
                let range = i * size..((i + 1) * size).min(self.event.profiles.len());
                (range.clone(), chunk_context(self.event, range, key_values))
            }
        };
        Some(ctx.and_then(|ctx| {
            render_one(
                self.prepared,
                self.event,
                &self.key_values,
                &ctx,
                self.first_chunk + i,
                range,
            )
        }))
    }
}

pub(super) struct SharedChunks<'a> {
    pub(super) prepared: &'a Prepared,
    pub(super) event: &'a TriggerEvent,
    /// The rendered URL and headers: copied for each chunk, taken by the last.
    pub(super) target: Option<(Url, HeaderMap)>,
    pub(super) key_values: BodyKeyValues<'a>,
    pub(super) size: usize,
    pub(super) first_chunk: usize,
    pub(super) next: usize,
    pub(super) chunks: usize,
    /// What all the chunks weigh together ([`SharedChunks::weigh`]).
    pub(super) total: usize,
    /// What the rendered URL, headers and key_values weigh, alive until the last chunk.
    pub(super) kept: usize,
}

impl SharedChunks<'_> {
    fn range(&self, chunk: usize) -> std::ops::Range<usize> {
        chunk * self.size..((chunk + 1) * self.size).min(self.event.profiles.len())
    }

    /// What every chunk will weigh ([`rendered_bytes`] of each), counted without writing a
    /// body: a body is the one with no profiles plus each profile and a comma between. Sets
    /// `total`, and `kept` (what the shared parts weigh while the event is sent). Follows
    /// the header rules of [`delivery`]: it replaces Idempotency-Key, and Content-Type when
    /// there is a body (`chunks_made_as_taken_weigh_what_was_counted_before` keeps the two
    /// in step).
    pub(super) fn weigh(&mut self) {
        let has_body = self.prepared.template.method.has_body();
        let empty_body = if has_body { json_len(&self.body(0..0)) } else { 0 };
        let profile_lens: Vec<usize> = if has_body {
            self.event.profiles.iter().map(|p| p.json().len()).collect()
        } else {
            Vec::new()
        };
        let (url, headers) = self.target.as_ref().expect("weighed before any chunk is made");
        let target = url.as_str().len()
            + headers
                .iter()
                .filter(|(name, _)| **name != IDEMPOTENCY_KEY && (!has_body || **name != CONTENT_TYPE))
                .map(|(k, v)| k.as_str().len() + v.len())
                .sum::<usize>()
            + if has_body {
                CONTENT_TYPE.as_str().len() + JSON.len()
            } else {
                0
            };
        let event_id = header_safe(&self.event.event_id).len();
        self.kept = target + empty_body;
        self.total = (0..self.chunks)
            .map(|chunk| {
                let range = self.range(chunk);
                let number = self.first_chunk + chunk;
                let key = IDEMPOTENCY_KEY.as_str().len() + event_id + 1 + number.to_string().len();
                let body = if has_body {
                    empty_body
                        + profile_lens[range.clone()].iter().sum::<usize>()
                        + range.len().saturating_sub(1)
                } else {
                    0
                };
                target + key + body
            })
            .sum();
    }

    fn body(&self, range: std::ops::Range<usize>) -> Body<'_> {
        Body {
            is_test: self.event.is_test,
            target_id: self.event.target_id,
            key_values: &self.key_values,
            profiles: &self.event.profiles[range],
        }
    }
}

impl Iterator for SharedChunks<'_> {
    type Item = Delivery;

    fn next(&mut self) -> Option<Delivery> {
        if self.next == self.chunks {
            return None;
        }
        let chunk = self.next;
        self.next += 1;
        let target = if self.next == self.chunks {
            self.target.take()
        } else {
            self.target.clone()
        };
        let (url, headers) = target.expect("kept until the last chunk is made");
        Some(delivery(
            self.prepared,
            self.event,
            self.first_chunk + chunk,
            url,
            headers,
            &self.key_values,
            self.range(chunk),
        ))
    }
}

/// The length of `value` as compact JSON, without keeping the text.
fn json_len(value: &impl Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).expect("JSON values always serialise");
    count.0
}
