// The delivery log: a campaign's recent failures, and one event's timeline with a Replay
// of its dead letters.

import { api } from './api.js';
import { busy, button, confirmDialog, h, plural } from './dom.js';
import { pageHead, regions } from './page.js';

const ERRORS = {
  timeout: 'Timed out',
  connection: 'Connection failed',
  auth: 'No OAuth 2.0 token',
  ssrf_blocked: 'Blocked destination',
  circuit_open: 'Not sent: circuit breaker open',
  expired: 'Not sent: too old',
};

function when(ms) {
  const date = new Date(ms);
  return h('time', { datetime: date.toISOString(), title: date.toLocaleString() }, date.toLocaleString());
}

function result(a) {
  if (a.status) return `HTTP ${a.status}`;
  return ERRORS[a.error] || a.error || '—';
}

function outcome(a) {
  if (a.outcome === 'delivered') return h('span', { class: 'badge good' }, 'Delivered');
  if (a.outcome === 'retrying') return h('span', { class: 'badge warn' }, `Retrying (tier ${a.next})`);
  return h('span', { class: 'badge bad' }, `Dead-lettered: ${a.next}`);
}

/** A campaign's failed attempts, newest first, 20 at a time: each opens its event. */
export function recentFailures(targetId) {
  const body = h('tbody');
  const more = button('Older failures', { class: 'quiet', hidden: true });
  const empty = h('p', { class: 'muted', hidden: true }, 'No failed attempt in the delivery log.');
  const card = h('section', { class: 'card flush', 'aria-labelledby': 'failures-title' },
    h('h2', { id: 'failures-title', class: 'card-title' }, 'Recent failures'),
    empty,
    h('table', { class: 'cards' },
      h('caption', { class: 'visually-hidden' }, 'Failed attempts, newest first'),
      h('thead', {}, h('tr', {}, ['Event', 'When', 'Attempt', 'Result', 'Outcome'].map((c) => h('th', { scope: 'col' }, c)))),
      body),
    h('div', { class: 'pager' }, more));
  let cursor = null;
  async function load() {
    const params = new URLSearchParams({ outcome: 'failed', limit: '20' });
    if (cursor) params.set('cursor', cursor);
    let page;
    try {
      page = await api('GET', `/v1/campaigns/${encodeURIComponent(targetId)}/attempts?${params}`);
    } catch (err) {
      if (err.status !== 401) empty.textContent = `The delivery log could not be read: ${err.message}`;
      empty.hidden = false;
      return;
    }
    for (const a of page.attempts) {
      body.append(h('tr', {},
        h('th', { scope: 'row' }, h('a', { href: `#/events/${encodeURIComponent(a.event_id)}` }, a.event_id)),
        h('td', { 'data-label': 'When' }, when(a.at_ms)),
        h('td', { 'data-label': 'Attempt' }, `${a.attempt} (chunk ${a.chunk})`),
        h('td', { 'data-label': 'Result' }, result(a)),
        h('td', { 'data-label': 'Outcome' }, outcome(a))));
    }
    empty.hidden = body.children.length > 0;
    cursor = page.next_cursor;
    more.hidden = !cursor;
  }
  more.addEventListener('click', () => busy(more, load));
  load();
  return card;
}

/** Every attempt of one event, oldest first, and a Replay of its dead letters. */
export async function eventTimeline(view, eventId) {
  pageHead(view, `Event ${eventId}`);
  const { status, alert } = regions(view);
  let story;
  try {
    story = await api('GET', `/v1/events/${encodeURIComponent(eventId)}`);
  } catch (err) {
    if (err.status !== 401) alert.show(err.message);
    return;
  }
  const first = story.attempts[0];
  const steps = h('ol', { class: 'timeline' }, story.attempts.map((a) => h('li', {},
    h('div', { class: 'timeline-head' }, outcome(a), ' ', h('strong', {}, result(a)), ` · attempt ${a.attempt} of chunk ${a.chunk}`),
    h('div', { class: 'muted small' }, when(a.at_ms), ` · ${a.host} · ${a.latency_ms} ms · `,
      a.tier ? `from retry tier ${a.tier}` : 'from the trigger topic', ` · ${plural(a.request_bytes, 'byte')} sent`),
    a.answer ? h('div', { class: 'answer' }, 'The destination said: ', h('q', { class: 'mono small' }, a.answer)) : null)));
  view.append(h('p', {}, `Campaign `, h('a', { href: `#/campaigns/${encodeURIComponent(first.targetId)}` }, String(first.targetId)),
    ` · webhook `, h('a', { href: `#/webhooks/edit/${encodeURIComponent(first.template_id)}` }, first.template_id)),
  h('section', { class: 'card' }, h('h2', {}, 'Attempts'), steps));
  if (!story.dead_lettered.length) return;
  const replay = button('Replay', { class: 'primary' });
  view.append(h('section', { class: 'card state failed' },
    h('h2', {}, 'Dead letter'),
    h('p', {}, `${plural(story.dead_lettered.length, 'chunk')} of this event went to the dead-letter topic (${story.dead_lettered.join(', ')}).`),
    replay));
  replay.addEventListener('click', () => busy(replay, async () => {
    status.hide();
    alert.hide();
    const ok = await confirmDialog({
      title: `Replay event ${eventId}?`,
      message: 'Its dead letters are sent again from retry tier 1, with the same Idempotency-Key.',
      confirm: 'Replay',
      danger: false,
    });
    if (!ok) return;
    try {
      const report = await api('POST', '/v1/dead-letters/replay', { event_id: eventId, targetId: first.targetId });
      status.show(report.replayed
        ? `Replayed ${plural(report.replayed, 'dead letter')}.`
        : 'Nothing was replayed: the dead letter was replayed before, or is not on the topic yet.');
    } catch (err) {
      if (err.status !== 401) alert.show(err.message);
    }
  }));
}
