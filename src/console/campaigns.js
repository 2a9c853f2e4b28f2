// Campaign stats by targetId, with the "Webhook Dispatch Failed" state.

import { api } from './api.js';
import { field, h, plural, timeEl } from './dom.js';
import { recentFailures } from './delivery-log.js';
import { go, pageHead, regions } from './page.js';
import { controlCard } from './campaign-control.js';

/** The campaigns with recent deliveries, failed ones first: no targetId to know. */
async function listRecent(result, alert) {
  let answer;
  try {
    answer = await api('GET', '/v1/campaigns?limit=50');
  } catch (err) {
    if (err.status !== 401) alert.show(err.message);
    return;
  }
  const campaigns = answer.campaigns || [];
  if (!campaigns.length) {
    result.append(h('div', { class: 'card empty' }, h('p', { class: 'empty-title' }, 'No campaign has sent anything yet'),
      h('p', { class: 'muted' }, 'Campaigns appear here once their first webhook request is made.')));
    return;
  }
  result.append(h('div', { class: 'card flush' },
    h('table', { class: 'cards' },
      h('caption', { class: 'visually-hidden' }, 'Recent campaigns, failed ones first'),
      h('thead', {}, h('tr', {}, ['Campaign', 'State', 'Sending', 'Requests', 'Delivered', 'Dead-lettered', 'Last activity']
        .map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, campaigns.map((c) => h('tr', {},
        h('th', { scope: 'row' }, h('a', { href: `#/campaigns/${encodeURIComponent(c.targetId)}` }, String(c.targetId))),
        h('td', { 'data-label': 'State' }, c.dispatch_failed
          ? h('span', { class: 'badge bad' }, 'Webhook Dispatch Failed')
          : c.dead_lettered ? 'Recovered' : 'No failed deliveries'),
        h('td', { 'data-label': 'Sending' }, c.state === 'paused' ? h('span', { class: 'badge warn' }, 'Paused')
          : c.state === 'cancelled' ? h('span', { class: 'badge bad' }, 'Cancelled') : 'Sending'),
        h('td', { 'data-label': 'Requests' }, c.requests.toLocaleString()),
        h('td', { 'data-label': 'Delivered' }, c.delivered.toLocaleString()),
        h('td', { 'data-label': 'Dead-lettered' }, c.dead_lettered.toLocaleString()),
        h('td', { 'data-label': 'Last activity' }, c.last_at ? timeEl(c.last_at) : '—')))))));
}

export async function campaignStats(view, targetId) {
  pageHead(view, 'Campaign stats');
  const input = field({
    label: 'Campaign ID (targetId)', name: 'targetId', value: targetId || '',
    attrs: { inputmode: 'numeric', required: true, autocomplete: 'off' },
  });
  const form = h('form', { class: 'toolbar card' }, input, h('button', { type: 'submit', class: 'primary' }, 'Show stats'));
  view.append(form);
  const { status, alert } = regions(view);
  const result = h('div');
  view.append(result);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const value = form.elements.namedItem('targetId').value.trim();
    if (!/^-?\d+$/.test(value)) {
      // Another campaign's stats must not stay on screen under this one's ID.
      result.replaceChildren();
      status.hide();
      alert.show('A campaign ID (targetId) is a whole number.');
      return;
    }
    go(`#/campaigns/${value}`);
  });
  if (!targetId) {
    form.elements.namedItem('targetId').focus();
    await listRecent(result, alert);
    return;
  }
  let stats;
  try {
    stats = await api('GET', `/v1/campaigns/${encodeURIComponent(targetId)}/stats`);
  } catch (err) {
    if (err.status !== 401) alert.show(err.message);
    return;
  }
  const state = stats.dispatch_failed
    ? h('div', { class: 'state failed', role: 'alert' },
      h('strong', {}, 'Webhook Dispatch Failed'),
      h('span', {}, ` ${plural(stats.dead_lettered, 'delivery', 'deliveries')} of campaign ${stats.targetId} could not be delivered and went to the dead-letter topic.`))
    : stats.dead_lettered > 0
      ? h('div', { class: 'state ok' }, h('strong', {}, 'Recovered'),
        ` — every dead-lettered delivery of campaign ${stats.targetId} was replayed and delivered.`)
      : stats.requests === 0
        ? h('div', { class: 'state idle' }, h('strong', {}, 'No deliveries yet'), ` for campaign ${stats.targetId}.`)
      : h('div', { class: 'state ok' }, h('strong', {}, 'No failed deliveries'),
        ` — ${plural(stats.delivered, 'delivery', 'deliveries')} of this campaign delivered, none failed for good.`);
  const number = (label, value, kind = '') => h('div', { class: `stat ${kind}` },
    h('div', { class: 'stat-value' }, value.toLocaleString()), h('div', { class: 'stat-label' }, label));
  // Said to screen readers; the page shows it as the state and the numbers below. A
  // message carried from the last action (a pause, say) stays, and is seen.
  if (status.hidden) {
    status.classList.add('visually-hidden');
    status.show(`Stats of campaign ${stats.targetId}: ${plural(stats.requests, 'request')}, ${stats.delivered} delivered, ${stats.retried} retried, ${stats.dead_lettered} dead-lettered.`);
  }
  result.append(state, controlCard(stats, alert),
    h('div', { class: 'stats' },
      number('Requests', stats.requests),
      number('Delivered', stats.delivered, 'good'),
      number('Retried', stats.retried, stats.retried ? 'warn' : ''),
      number('Dead-lettered', stats.dead_lettered, stats.dispatch_failed ? 'bad' : ''),
      stats.recovered ? number('Recovered by replay', stats.recovered, 'good') : null),
    h('div', { class: 'card' },
      h('h2', {}, 'Last error'),
      stats.last_error
        ? h('p', {}, h('span', { class: 'mono' }, stats.last_error), ' ', timeEl(stats.last_error_at, ''))
        : h('p', { class: 'muted' }, 'None.'),
      stats.dead_lettered
        ? h('p', {}, h('a', { href: `#/dead-letters?targetId=${encodeURIComponent(stats.targetId)}` }, 'See this campaign’s dead letters'))
        : null),
    recentFailures(stats.targetId));
}
