//! The deliveries of one event as an iterator, each made when it is taken: chunks that
//! share one rendered URL, headers and key_values write their body then; many profiles of a
//! per-profile template are rendered (again) then. What they all weigh is known before the
//! first is taken, so the event's cap and errors still come first.

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde::Serialize;
use url::Url;

use super::{
    Body, BodyKeyValues, Delivery, EventKeyValues, IDEMPOTENCY_KEY, JSON, RenderError, context, delivery,
    header_safe, render_one, rendered_bytes,
};
use crate::event::TriggerEvent;
use crate::template::Prepared;

/// The deliveries of one event, in chunk order.
pub struct Deliveries<'a>(pub(super) Inner<'a>);

pub(super) enum Inner<'a> {
    /// Rendered already: single chunks, and per-profile templates with up to
    /// [`RENDER_AHEAD_PROFILES`] profiles.
    Ready(std::vec::IntoIter<Delivery>),
    /// Chunks sharing one rendered URL, headers and key_values; bodies written when taken.
    Shared(Box<SharedChunks<'a>>),
    /// Many profiles of a per-profile template, each rendered (again) when taken.
    PerProfile(Box<PerProfile<'a>>),
}

impl Iterator for Deliveries<'_> {
    type Item = Delivery;

    fn next(&mut self) -> Option<Delivery> {
        match &mut self.0 {
            Inner::Ready(ready) => ready.next(),
            Inner::Shared(shared) => shared.next(),
            // Rendering is deterministic and every profile rendered once already, so this
            // cannot fail; if it ever did, the record's task panics and the record is
            // dead-lettered whole as internal_error, never lost.
            Inner::PerProfile(each) => each
                .next()
                .map(|made| made.expect("a profile that rendered once renders again")),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = match &self.0 {
            Inner::Ready(ready) => ready.len(),
            Inner::Shared(shared) => shared.chunks - shared.next,
            Inner::PerProfile(each) => each.event.profiles.len() - each.next,
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
            Inner::PerProfile(_) => 0,
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
            Inner::PerProfile(each) => within(bytes, each.total, each.event.profiles.len()),
        }
    }
}

/// Per-profile events with at most this many profiles are rendered before the first request;
/// larger ones are rendered twice (checked, then made as taken) to bound their memory.
pub(super) const RENDER_AHEAD_PROFILES: usize = 64;

/// One request per profile, rendered in that profile's context.
pub(super) struct PerProfile<'a> {
    pub(super) prepared: &'a Prepared,
    pub(super) event: &'a TriggerEvent,
    pub(super) first_chunk: usize,
    /// The event's key_values, for the profiles' contexts and bodies.
    pub(super) key_values: EventKeyValues<'a>,
    pub(super) next: usize,
    /// What all the requests weigh together, once weighed.
    pub(super) total: usize,
}

impl Iterator for PerProfile<'_> {
    type Item = Result<Delivery, RenderError>;

    fn next(&mut self) -> Option<Self::Item> {
        let i = self.next;
        let profile = self.event.profiles.get(i)?;
        self.next += 1;
        let ctx = match context(self.event, Some((i, profile)), self.key_values.map.as_ref()) {
            Ok(ctx) => ctx,
            Err(err) => return Some(Err(err)),
        };
        Some(render_one(
            self.prepared,
            self.event,
            &self.key_values,
            &ctx,
            self.first_chunk + i,
            i..i + 1,
        ))
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
