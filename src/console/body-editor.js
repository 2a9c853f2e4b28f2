// Webhooks: the request body editor of the form, with a preview rendered by the service
// (POST /v1/templates/preview) from the sample event the test request uses.

import { api } from './api.js';
import { busy, button, field, h, region } from './dom.js';

/** `''` is CleverTap's body (no body template). */
const BODY_TYPES = [
  ['', 'CleverTap (default)'],
  ['application/json', 'JSON'],
  ['application/x-www-form-urlencoded', 'Form (URL-encoded)'],
  ['text/plain', 'Plain text'],
];

const HINTS = {
  'application/json': 'Each {{ … }} is written as a whole JSON value: put it outside quotes and join text with ~, as in "subject": {{ "Low rating from " ~ profile.name }}.',
  'application/x-www-form-urlencoded': 'Each {{ … }} is form-encoded, as in To={{ profile.phone }}&Body={{ "Hi " ~ profile.name }}.',
  'text/plain': 'Values are written as they are.',
};

/** The Body card: the format, the template, and its preview. `current()` is the template
 * the form describes (for the preview); `read(template)` sets or removes `body` on it. */
export function bodyEditor(stored, current) {
  const body = stored.body || null;
  const kind = field({ label: 'Body format', name: 'body.content_type', options: BODY_TYPES, value: body ? body.content_type || 'application/json' : '' });
  const initial = body ? body.content_type || 'application/json' : 'application/json';
  const text = field({ label: 'Body template', name: 'body.template', type: 'textarea', value: body ? body.template : '', hint: HINTS[initial] });
  const hint = text.querySelector('.hint');
  const preview = button('Preview', { class: 'secondary' });
  const shown = h('pre', { class: 'preview mono small', tabindex: '0', 'aria-label': 'Preview of the first request body' });
  const said = region('status');
  const refused = region('alert');
  const pane = h('section', { class: 'preview-pane', 'aria-labelledby': 'body-preview-title' },
    h('h3', { id: 'body-preview-title' }, 'Preview'),
    h('p', { class: 'hint' }, 'Rendered by the service from the sample event the test request uses; nothing is sent.'),
    h('div', {}, preview), said, refused, shown);
  const card = h('fieldset', { class: 'card' }, h('legend', {}, 'Body'),
    h('p', { class: 'hint' }, 'CleverTap’s body (is_test, targetId, key_values, profiles) unless you shape one for the tool at the other end. A body that reads profile. sends one request per profile; otherwise one per batch, read as profiles.'),
    h('div', { class: 'grid two' }, kind), h('div', { class: 'grid two body-editor' }, text, pane));
  const select = kind.querySelector('select');
  const area = text.querySelector('textarea');
  const editorParts = card.querySelector('.body-editor');

  function show() {
    editorParts.hidden = select.value === '';
    hint.textContent = HINTS[select.value] || '';
  }
  select.addEventListener('change', show);
  show();

  preview.addEventListener('click', () => busy(preview, async () => {
    said.hide();
    refused.hide();
    shown.textContent = '';
    const template = current();
    if (!template.id) delete template.id;
    try {
      const answer = await api('POST', '/v1/templates/preview', { template });
      const first = answer.requests[0];
      const count = answer.requests_total === 1 ? '1 request' : `${answer.requests_total} requests`;
      said.show(`${count} for the sample event; the first is ${first.method} ${first.headers['content-type'] || ''}.`);
      shown.textContent = pretty(first.body, first.headers['content-type']);
    } catch (err) {
      if (err.status !== 401) refused.show(err.message);
    }
  }));

  return {
    card,
    read(template) {
      delete template.body;
      if (select.value !== '') template.body = { content_type: select.value, template: area.value };
    },
  };
}

/** A JSON body indented for reading; anything else as it is. */
function pretty(body, type) {
  if (body === null || body === undefined) return '(no body)';
  if (!(type || '').startsWith('application/json')) return body;
  try {
    return JSON.stringify(JSON.parse(body), null, 2);
  } catch {
    return body;
  }
}
