// Pause, resume or cancel a campaign from its page, after a confirmation.

import { api } from './api.js';
import { busy, button, confirmDialog, h, plural, timeEl } from './dom.js';
import { go } from './page.js';

const ACTIONS = {
  pause: {
    label: 'Pause campaign',
    title: (id) => `Pause campaign ${id}?`,
    message: 'Its webhooks stop at once, on every replica: deliveries are held, unsent, until you resume it (at most campaign_max_pause, 7 days by default, or the template’s max age). Other campaigns keep sending.',
    confirm: 'Pause',
    danger: false,
    done: (id) => `Campaign ${id} is paused: its deliveries are held until you resume it.`,
  },
  resume: {
    label: 'Resume campaign',
    title: (id) => `Resume campaign ${id}?`,
    message: 'Held deliveries are sent at once, then new ones as they come. Deliveries dead-lettered as cancelled stay on the dead-letter topic: replay them from Dead letters.',
    confirm: 'Resume',
    danger: false,
    done: (id) => `Campaign ${id} is sending again.`,
  },
  cancel: {
    label: 'Cancel campaign',
    title: (id) => `Cancel campaign ${id}?`,
    message: 'What it holds, and every delivery of it that arrives until you resume it, is dead-lettered unsent with the reason “cancelled”. Resume it later and replay those dead letters to send them after all.',
    confirm: 'Cancel campaign',
    danger: true,
    done: (id) => `Campaign ${id} is cancelled: its deliveries go to the dead-letter topic, unsent.`,
  },
};

/** What the campaign does now, and the buttons that change it. */
export function controlCard(stats, alert) {
  const id = stats.targetId;
  const actions = stats.state === 'paused' ? ['resume', 'cancel']
    : stats.state === 'cancelled' ? ['resume'] : ['pause', 'cancel'];
  const buttons = actions.map((action) => {
    const spec = ACTIONS[action];
    const btn = button(spec.label, { class: spec.danger ? 'danger' : '' });
    btn.addEventListener('click', () => busy(btn, async () => {
      alert.hide();
      const ok = await confirmDialog({ title: spec.title(id), message: spec.message, confirm: spec.confirm, danger: spec.danger });
      if (!ok) return btn.focus();
      try {
        await api('POST', `/v1/campaigns/${encodeURIComponent(id)}/${action}`);
      } catch (err) {
        if (err.status !== 401) alert.show(err.message);
        return;
      }
      go(`#/campaigns/${id}`, ['status', spec.done(id)]);
    }));
    return btn;
  });
  const since = stats.state_since ? [' since ', timeEl(stats.state_since)] : [];
  const said = stats.state === 'paused'
    ? h('p', {}, h('span', { class: 'badge warn' }, 'Paused'), ...since, ` — ${plural(stats.held, 'delivery', 'deliveries')} held, unsent.`)
    : stats.state === 'cancelled'
      ? h('p', {}, h('span', { class: 'badge bad' }, 'Cancelled'), ...since, ` — ${plural(stats.cancelled, 'delivery', 'deliveries')} dead-lettered unsent.`)
      : h('p', {}, h('span', { class: 'badge' }, 'Sending'), stats.cancelled
        ? ` — ${plural(stats.cancelled, 'delivery', 'deliveries')} were cancelled earlier; replay them from Dead letters.` : '');
  return h('div', { class: 'card' }, h('h2', {}, 'Sending'), said, h('div', { class: 'actions' }, buttons));
}
