// Dead letters: select by reason, template, campaign and time; count them (a dry run) and
// replay them after a confirmation.

import { api } from './api.js';
import { busy, button, clear, confirmDialog, field, formatTime, h, plural, timeEl } from './dom.js';
import { pageHead, regions } from './page.js';

const REASONS = [
  ['retries_exhausted', 'Retries exhausted'],
  ['rejected', 'Rejected by the destination'],
  ['invalid_event', 'Invalid event'],
  ['template_not_found', 'Template not found'],
  ['render_error', 'Render error'],
  ['ssrf_blocked', 'Blocked destination (SSRF guard)'],
  ['expired', 'Expired (max age or longest pause)'],
  ['internal_error', 'Internal error'],
  ['circuit_open_expired', 'Waited too long behind an open circuit breaker'],
  ['cancelled', 'Campaign cancelled (unsent)'],
];

export function deadLetters(view, params) {
  pageHead(view, 'Dead letters');
  const localValue = (iso) => {
    const date = formatTime(iso);
    if (!date) return '';
    const shifted = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
    return shifted.toISOString().slice(0, 16);
  };
  const form = h('form', { class: 'card filters', novalidate: true },
    h('div', { class: 'grid three' },
      field({ label: 'Reason', name: 'reason', options: [['', 'Any reason'], ...REASONS], value: params.get('reason') || '' }),
      field({ label: 'Webhook (template ID)', name: 'template_id', value: params.get('template_id') || '', attrs: { autocomplete: 'off' } }),
      field({ label: 'Campaign ID (targetId)', name: 'targetId', value: params.get('targetId') || '', attrs: { inputmode: 'numeric', autocomplete: 'off' } }),
      field({ label: 'Dead-lettered from', name: 'since', type: 'datetime-local', value: localValue(params.get('since')) }),
      field({ label: 'Dead-lettered until', name: 'until', type: 'datetime-local', value: localValue(params.get('until')) })),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'secondary' }, 'Count (dry run)'),
      button('Replay', { class: 'primary' })));
  view.append(form);
  const { status, alert } = regions(view);
  const results = h('div');
  view.append(results);
  const [countButton, replayButton] = form.querySelectorAll('button');

  function filters() {
    const get = (name) => form.elements.namedItem(name).value.trim();
    const request = {};
    if (get('reason')) request.reason = get('reason');
    if (get('template_id')) request.template_id = get('template_id');
    if (get('targetId')) {
      if (!/^-?\d+$/.test(get('targetId'))) throw new Error('A campaign ID (targetId) is a whole number.');
      request.targetId = Number(get('targetId'));
    }
    for (const name of ['since', 'until']) {
      if (get(name)) {
        const date = new Date(get(name));
        if (Number.isNaN(date.getTime())) throw new Error(`“${name}” is not a date and time.`);
        request[name] = date.toISOString();
      }
    }
    if (request.since && request.until && request.since > request.until) {
      throw new Error('“Dead-lettered from” is after “Dead-lettered until”: nothing can match. Swap them.');
    }
    return request;
  }

  /** The filters as the URL keeps them (`#/dead-letters?reason=rejected`), so a reload,
   * Back or a shared link shows the same selection. */
  function keepInUrl(request) {
    const query = new URLSearchParams(Object.entries(request).map(([k, v]) => [k, String(v)]));
    const hash = `#/dead-letters${query.size ? `?${query}` : ''}`;
    if (location.hash !== hash) history.replaceState(null, '', hash);
  }

  function describe(request) {
    const parts = [];
    if (request.reason) parts.push(`reason ${request.reason}`);
    if (request.template_id) parts.push(`webhook ${request.template_id}`);
    if (request.targetId !== undefined) parts.push(`campaign ${request.targetId}`);
    if (request.since) parts.push(`from ${new Date(request.since).toLocaleString()}`);
    if (request.until) parts.push(`until ${new Date(request.until).toLocaleString()}`);
    return parts.length ? parts.join(', ') : 'no filter';
  }

  function lastError(letter) {
    const status = letter.last_status ? `HTTP ${letter.last_status}` : null;
    const error = letter.last_error || null;
    if (status && error && error.includes(status)) return error;
    return [status, error].filter(Boolean).join(' · ') || '—';
  }

  /** The newest first; a reason by the filter's label (its code beside it for search). */
  function letterTable(letters) {
    const newest = [...letters].sort((a, b) => String(b.dead_lettered_at).localeCompare(String(a.dead_lettered_at)));
    const shown = newest.slice(0, 200);
    const reasonLabel = (reason) => REASONS.find(([code]) => code === reason)?.[1] || reason;
    return h('div', { class: 'card flush' },
      h('table', { class: 'cards' },
        h('caption', { class: 'visually-hidden' }, 'Matching dead letters'),
        h('thead', {}, h('tr', {}, ['Dead-lettered', 'Reason', 'Webhook', 'Campaign', 'Event', 'Attempts', 'Last error', 'Replays to', 'Replayed']
          .map((c) => h('th', { scope: 'col' }, c)))),
        h('tbody', {}, shown.map((l) => h('tr', {},
          h('td', { 'data-label': 'Dead-lettered' }, timeEl(l.dead_lettered_at)),
          h('td', { 'data-label': 'Reason' }, h('span', { class: 'badge', title: l.reason }, reasonLabel(l.reason))),
          h('td', { class: 'mono', 'data-label': 'Webhook' }, l.template_id ?? '—'),
          h('td', { 'data-label': 'Campaign' }, l.target_id ?? '—'),
          h('td', { class: 'mono small', 'data-label': 'Event' }, l.event_id ?? '—', l.chunk !== null && l.chunk !== undefined ? ` #${l.chunk}` : ''),
          h('td', { 'data-label': 'Attempts' }, l.attempts),
          h('td', { class: 'small', 'data-label': 'Last error' }, lastError(l)),
          h('td', { 'data-label': 'Replays to' }, l.replay_to === 'trigger' ? 'trigger topic' : 'retry tier 1'),
          h('td', { 'data-label': 'Replayed' }, l.replayed_before ? replayed(l) : '—'))))),
      letters.length > shown.length ? h('p', { class: 'muted pad' }, `First ${shown.length} of ${letters.length} shown.`) : null);
  }

  /** When a letter was replayed, and what became of it once that is known. */
  function replayed(l) {
    const outcome = {
      delivered: h('span', { class: 'badge good' }, 'Delivered'),
      dead_lettered: h('span', { class: 'badge bad' }, 'Failed again'),
    }[l.replay_outcome];
    return [
      h('span', { class: 'badge' }, 'Replayed'), ' ', l.replayed_at ? timeEl(l.replayed_at) : null,
      outcome ? h('div', { class: 'replay-outcome' }, outcome, ' ', l.replay_outcome_at ? timeEl(l.replay_outcome_at) : null)
        : h('div', { class: 'muted small' }, l.replay_to === 'retry' ? 'No outcome yet' : ''),
    ];
  }

  async function dryRun() {
    const request = { ...filters(), dry_run: true };
    return api('POST', '/v1/dead-letters/replay', request);
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(countButton, async () => {
      status.hide();
      alert.hide();
      clear(results);
      try {
        const report = await dryRun();
        keepInUrl(filters());
        const atLeast = report.next_cursor ? 'At least ' : '';
        const before = report.letters.filter((l) => l.replayed_before).length;
        const replayedBefore = before ? ` ${before} of them ${before === 1 ? 'was' : 'were'} replayed before (marked below).` : '';
        status.show(`${atLeast}${plural(report.count, 'dead letter')} match (${describe(filters())}).${replayedBefore} Dry run: nothing was replayed.`);
        if (report.count) results.append(letterTable(report.letters));
      } catch (err) {
        if (err.status !== 401) alert.show(err.message);
      }
    });
  });

  replayButton.addEventListener('click', () => busy(replayButton, async () => {
    status.hide();
    alert.hide();
    try {
      const request = filters();
      const preview = await dryRun();
      if (preview.count === 0) {
        status.show(`Nothing to replay: no dead letter matches (${describe(request)}).`);
        return;
      }
      const ok = await confirmDialog({
        title: `Replay ${plural(preview.count, 'dead letter')}?`,
        message: `Matching ${describe(request)}. Failed deliveries start their attempts afresh (same Idempotency-Key); whole records go back on the trigger topic. Nothing is removed from the dead-letter topic.`,
        confirm: `Replay ${preview.count}`,
        danger: false,
      });
      if (!ok) {
        status.show('Replay cancelled.');
        return replayButton.focus();
      }
      // A page at a time, until the scan is over; letters replayed before are skipped.
      let replayed = 0;
      let skipped = 0;
      let letters = [];
      let cursor = null;
      do {
        const report = await api('POST', '/v1/dead-letters/replay',
          { ...request, dry_run: false, ...(cursor ? { cursor } : {}) });
        replayed += report.replayed;
        skipped += report.already_replayed;
        letters = letters.concat(report.letters).slice(0, 500);
        cursor = report.next_cursor;
      } while (cursor);
      clear(results);
      const before = skipped
        ? ` ${plural(skipped, 'dead letter')} had been replayed before and ${skipped === 1 ? 'was' : 'were'} skipped.`
        : '';
      status.show(`Replayed ${plural(replayed, 'dead letter')}.${before}`);
      if (letters.length) results.append(letterTable(letters));
    } catch (err) {
      if (err.status !== 401) alert.show(err.message);
    }
  }));

  // Replay stays secondary until a filter narrows what it would send again.
  const narrowed = () => Object.keys(filtersOrEmpty()).length > 0;
  function filtersOrEmpty() {
    try {
      return filters();
    } catch {
      return {};
    }
  }
  const emphasise = () => replayButton.classList.toggle('primary', narrowed());
  form.addEventListener('input', emphasise);
  form.addEventListener('change', emphasise);
  emphasise();
  // Opening the page lists what is there (a dry run, newest first): counting is not a step
  // the user must take before seeing anything.
  form.requestSubmit();
}
