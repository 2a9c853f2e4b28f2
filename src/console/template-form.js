// Webhooks: the create / edit form. Every control's name is the template JSON path it edits;
// the API's validation messages appear next to the control its `field` names.

import { api, templatePath } from './api.js';
import { bodyEditor } from './body-editor.js';
import { busy, button, confirmDialog, duration, field, formatTime, h, listOf, nextId, region, sentence, slug } from './dom.js';
import { go, guardLeaving, pageHead, regions } from './page.js';

const MASK = '****';
const AUTH_TYPES = [['none', 'None'], ['basic', 'Basic'], ['oauth2', 'OAuth 2.0']];
export const GRANT_TYPES = [['client_credentials', 'Client credentials'], ['password', 'Password']];
const CLIENT_AUTHS = [
  ['basic_header', 'Basic auth header'],
  ['request_body', 'Client id and secret in the request body'],
];
const METHODS = ['POST', 'GET', 'PUT', 'DELETE'];
/** The expiry override's common values, beside its free number. */
const EXPIRY_CHOICES = [['', 'As the endpoint says'], ['300', '5 minutes'], ['900', '15 minutes'],
  ['3600', '1 hour'], ['43200', '12 hours'], ['86400', '24 hours']];
/** The template fields the form edits (updated_at and effective_rate_per_sec are the service's). */
const FORM_FIELDS = new Set(['id', 'name', 'url', 'method', 'headers', 'body', 'auth', 'batch_size', 'timeout_ms',
  'max_retries', 'max_concurrency', 'rate_limit_per_sec', 'template_concurrency', 'max_age_seconds', 'signing_secret',
  'updated_at', 'effective_rate_per_sec']);

export async function templateForm(view, id) {
  const editing = id !== null;
  let stored = null;
  pageHead(view, editing ? 'Edit webhook' : 'Add Webhook',
    h('a', { class: 'button quiet', href: '#/webhooks' }, 'Back to webhooks'));
  const { status, alert } = regions(view);
  if (editing) {
    try {
      stored = await api('GET', templatePath(id));
    } catch (err) {
      if (err.status !== 401) alert.show(err.status === 404 ? `There is no webhook “${id}”.` : err.message);
      return;
    }
  }
  const t = stored || {
    id: '', name: '', url: '', method: 'POST', headers: {}, auth: { type: 'none' },
    batch_size: 100, timeout_ms: 5000, max_retries: 2,
  };
  const auth = t.auth || { type: 'none' };
  const val = (v) => (v === null || v === undefined ? '' : String(v));

  const form = h('form', { class: 'template-form', novalidate: true, autocomplete: 'off' });

  // Basics
  const basics = h('fieldset', { class: 'card' }, h('legend', {}, 'Basics'),
    h('div', { class: 'grid two' },
      field({ label: 'Name', name: 'name', value: t.name, hint: 'What campaign managers see in lists.', attrs: { required: !editing } }),
      field({
        label: 'Template ID', name: 'id', value: t.id,
        hint: editing ? 'Fixed once created: triggers name it as template_id.' : 'Made from the Name; triggers name it as template_id. No spaces.',
        attrs: { readonly: editing, required: true },
      })),
    h('div', { class: 'grid url' },
      field({ label: 'Method', name: 'method', options: METHODS.map((m) => [m, m]), value: t.method }),
      field({
        label: 'Destination URL', name: 'url', value: t.url, attrs: { inputmode: 'url', required: true, placeholder: 'https://' },
        hint: 'May use {{ targetId }}, {{ event_id }}, {{ key_values.NAME }}, {{ profile.FIELD }}.',
      })));

  // Headers
  const headerRows = h('div', { class: 'kv-rows' });
  const addHeader = button('+ Key-Value Pair', { class: 'quiet' });
  function headerRow(key = '', value = '') {
    const keyId = nextId('hk');
    const valueId = nextId('hv');
    const errorId = `${keyId}-error`;
    const remove = button('Remove', { class: 'quiet' });
    const row = h('div', { class: 'kv' },
      h('label', { for: keyId, class: 'visually-hidden' }, 'Header name'),
      h('input', { id: keyId, class: 'kv-key', placeholder: 'Header name', value: key, spellcheck: 'false', 'aria-describedby': errorId }),
      h('label', { for: valueId, class: 'visually-hidden' }, 'Header value'),
      h('input', { id: valueId, class: 'kv-value', placeholder: 'Value', value, spellcheck: 'false' }),
      remove,
      h('p', { class: 'field-error', id: errorId, hidden: true }));
    remove.addEventListener('click', () => {
      const next = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      numberHeaders();
      (next?.querySelector('input') || addHeader).focus();
    });
    headerRows.append(row);
    numberHeaders();
    return row;
  }
  function numberHeaders() {
    [...headerRows.children].forEach((row, n) => {
      const [key, value] = row.querySelectorAll('input');
      key.name = `headers.${n}.key`;
      value.name = `headers.${n}.value`;
      const [keyLabel, valueLabel] = row.querySelectorAll('label');
      keyLabel.textContent = `Header ${n + 1} name`;
      valueLabel.textContent = `Header ${n + 1} value`;
    });
  }
  addHeader.addEventListener('click', () => headerRow().querySelector('input').focus());
  for (const [key, value] of Object.entries(t.headers || {})) headerRow(key, value);
  const headers = h('fieldset', { class: 'card' }, h('legend', {}, 'Headers'),
    h('p', { class: 'hint' }, 'Sent with every request. Values may use placeholders.'),
    headerRows, h('div', {}, addHeader));

  const body = bodyEditor(t, () => collect());

  // Authentication
  const secretHint = editing ? `${MASK} keeps the stored secret.` : undefined;
  const grantValue = auth.grant_type || 'client_credentials';
  const tokenStatus = region('status');
  const tokenAlert = region('alert');
  const generate = button('Generate', { class: 'secondary' });
  const mappingOpen = Boolean(auth.access_token_path || auth.refresh_token_path || auth.expires_in_path);
  const authFields = h('fieldset', { class: 'card' }, h('legend', {}, 'Authentication'),
    h('div', { class: 'grid two' },
      field({ label: 'Authentication type', name: 'auth.type', options: AUTH_TYPES, value: auth.type }),
      h('div', { 'data-when': 'oauth2' },
        field({ label: 'Grant type', name: 'auth.grant_type', options: GRANT_TYPES, value: grantValue }))),
    h('div', { class: 'grid two', 'data-when': 'oauth2' },
      field({ label: 'Access token URL', name: 'auth.token_url', value: val(auth.token_url), attrs: { inputmode: 'url', placeholder: 'https://', required: true } }),
      h('div', { 'data-when': 'oauth2-password' },
        field({ label: 'Refresh token URL', name: 'auth.refresh_token_url', value: val(auth.refresh_token_url), hint: 'Optional; the access token URL when empty.', attrs: { inputmode: 'url' } })),
      field({ label: 'Client ID', name: 'auth.client_id', value: val(auth.client_id), attrs: { required: true } }),
      field({ label: 'Client secret', name: 'auth.client_secret', type: 'password', value: val(auth.client_secret), hint: secretHint, attrs: { autocomplete: 'new-password' } })),
    h('div', { class: 'grid two', 'data-when': 'basic oauth2-password' },
      field({ label: 'Username', name: 'auth.username', value: val(auth.username), attrs: { required: true } }),
      field({ label: 'Password', name: 'auth.password', type: 'password', value: val(auth.password), hint: secretHint, attrs: { autocomplete: 'new-password', required: true } })),
    h('div', { class: 'grid two', 'data-when': 'oauth2' },
      field({ label: 'Scopes', name: 'auth.scopes', value: (auth.scopes || []).join(' '), hint: 'Separated by spaces.' }),
      field({ label: 'Client authentication', name: 'auth.client_auth', options: CLIENT_AUTHS, value: auth.client_auth || 'basic_header' }),
      h('div', { class: 'grid expiry' },
        field({ label: 'Expiry override (seconds)', name: 'auth.expiry_seconds', value: val(auth.expiry_seconds), hint: 'Instead of the endpoint’s expires_in. Optional.', attrs: { inputmode: 'numeric' } }),
        field({ label: 'Common expiries', name: 'expiry-choice', options: EXPIRY_CHOICES, value: String(auth.expiry_seconds ?? '') }))),
    h('div', { class: 'token-box', 'data-when': 'oauth2' },
      h('div', {}, generate, h('span', { class: 'hint' }, ' Fetches a token with the credentials above (saved or not).')),
      tokenStatus, tokenAlert),
    h('details', { 'data-when': 'oauth2', open: mappingOpen },
      h('summary', {}, 'Token answer mapping and header'),
      h('p', { class: 'hint' }, 'For token endpoints that answer with other field names: dotted paths such as token or data.access_token.'),
      h('div', { class: 'grid three' },
        field({ label: 'Access token field', name: 'auth.access_token_path', value: val(auth.access_token_path), attrs: { placeholder: 'access_token' } }),
        field({ label: 'Refresh token field', name: 'auth.refresh_token_path', value: val(auth.refresh_token_path), attrs: { placeholder: 'refresh_token' } }),
        field({ label: 'Expiry field', name: 'auth.expires_in_path', value: val(auth.expires_in_path), attrs: { placeholder: 'expires_in' } })),
      h('div', { class: 'grid two' },
        field({ label: 'Token header', name: 'auth.token_header', value: auth.token_header ?? 'Authorization' }),
        field({ label: 'Token prefix', name: 'auth.token_prefix', value: auth.token_prefix ?? 'Bearer ', hint: 'Sent before the token, space included.' }))));

  // Delivery
  const delivery = h('fieldset', { class: 'card' }, h('legend', {}, 'Delivery'),
    h('div', { class: 'grid three' },
      field({ label: 'Batch size', name: 'batch_size', value: val(t.batch_size), hint: 'Profiles per request, 1–1000.', attrs: { inputmode: 'numeric' } }),
      field({ label: 'Timeout (ms)', name: 'timeout_ms', value: val(t.timeout_ms), hint: 'Per request.', attrs: { inputmode: 'numeric' } }),
      field({ label: 'Retries', name: 'max_retries', value: val(t.max_retries), hint: 'After the first attempt.', attrs: { inputmode: 'numeric' } }),
      field({ label: 'Max concurrency (host)', name: 'max_concurrency', value: val(t.max_concurrency), hint: 'Requests at once to this host; the service default when empty.', attrs: { inputmode: 'numeric' } }),
      field({ label: 'Webhook concurrency', name: 'template_concurrency', value: val(t.template_concurrency), hint: 'Requests at once of this webhook alone; no limit of its own when empty.', attrs: { inputmode: 'numeric' } }),
      field({
        label: 'Rate limit (requests/s)', name: 'rate_limit_per_sec', value: val(t.rate_limit_per_sec),
        hint: t.effective_rate_per_sec != null
          ? `Now ${Number(t.effective_rate_per_sec.toPrecision(3))}/s: lowered after the destination answered 429, rising back while it accepts. Shared by every replica; unlimited when empty.`
          : 'Shared by every replica; unlimited when empty.',
        attrs: { inputmode: 'decimal' },
      }),
      field({ label: 'Max age (seconds)', name: 'max_age_seconds', value: val(t.max_age_seconds), hint: 'Older events are dead-lettered, not sent late.', attrs: { inputmode: 'numeric' } })),
    field({
      label: 'Signing secret', name: 'signing_secret', type: 'password', value: val(t.signing_secret),
      hint: `Standard Webhooks signature (whsec_…); none when empty.${secretHint ? ` ${secretHint}` : ''}`,
      attrs: { autocomplete: 'new-password' },
    }));

  const save = h('button', { type: 'submit', class: 'primary' }, 'Test & Save');
  const footer = h('div', { class: 'form-footer' },
    h('p', { class: 'hint' }, 'Test & Save sends a test request (is_test: true) and saves only if the destination answers 200 OK.'),
    h('div', { class: 'actions' }, h('a', { class: 'button quiet', href: '#/webhooks' }, 'Cancel'), save));
  if (editing) {
    const del = button('Delete', { class: 'danger' });
    del.addEventListener('click', () => remove(del));
    footer.querySelector('.actions').prepend(del);
  }
  form.append(basics, headers, body.card, authFields, delivery, footer);
  view.append(form);

  const control = (name) => form.elements.namedItem(name);
  // The chooser fills the number, and shows the number's value when it is a common one.
  const expiry = control('auth.expiry_seconds');
  const expiryChoice = control('expiry-choice');
  expiryChoice.addEventListener('change', () => { expiry.value = expiryChoice.value; });
  expiry.addEventListener('input', () => {
    const known = EXPIRY_CHOICES.some(([v]) => v === expiry.value.trim());
    expiryChoice.value = known ? expiry.value.trim() : '';
  });
  const typeSelect = control('auth.type');
  const grantSelect = control('auth.grant_type');
  // `data-when` lists the states a group belongs to: `oauth2`, `oauth2-password`, `basic`.
  function showAuthFields() {
    const states = [typeSelect.value, `${typeSelect.value}-${grantSelect.value}`];
    for (const el of form.querySelectorAll('[data-when]')) {
      el.hidden = !el.dataset.when.split(' ').some((w) => states.includes(w));
    }
  }
  typeSelect.addEventListener('change', showAuthFields);
  grantSelect.addEventListener('change', showAuthFields);
  showAuthFields();

  // The template JSON the form describes.
  function collect() {
    const text = (name) => control(name).value.trim();
    const number = (name) => {
      const raw = text(name);
      if (raw === '') return undefined;
      return /^-?\d+(\.\d+)?$/.test(raw) ? Number(raw) : raw; // the API names a bad value
    };
    // Fields this form does not show (added to the API later) are sent back as they were.
    const template = Object.fromEntries(Object.entries(stored || {}).filter(([key]) => !FORM_FIELDS.has(key)));
    Object.assign(template, { id: text('id'), name: text('name'), url: text('url'), method: control('method').value });
    template.headers = {};
    for (const row of headerRows.children) {
      const [key, value] = row.querySelectorAll('input');
      if (key.value.trim() === '' && value.value === '') continue;
      template.headers[key.value.trim()] = value.value;
    }
    const type = typeSelect.value;
    if (type === 'basic') {
      template.auth = { type, username: text('auth.username'), password: control('auth.password').value };
    } else if (type === 'oauth2') {
      const a = {
        type,
        grant_type: grantSelect.value,
        token_url: text('auth.token_url'),
        client_id: text('auth.client_id'),
        client_secret: control('auth.client_secret').value,
        scopes: text('auth.scopes').split(/[\s,]+/).filter(Boolean),
        client_auth: control('auth.client_auth').value,
        token_header: text('auth.token_header') || 'Authorization',
        token_prefix: control('auth.token_prefix').value,
      };
      if (grantSelect.value === 'password') {
        a.username = text('auth.username');
        a.password = control('auth.password').value;
        if (text('auth.refresh_token_url')) a.refresh_token_url = text('auth.refresh_token_url');
      }
      const expiry = number('auth.expiry_seconds');
      if (expiry !== undefined) a.expiry_seconds = expiry;
      for (const path of ['access_token_path', 'refresh_token_path', 'expires_in_path']) {
        if (text(`auth.${path}`)) a[path] = text(`auth.${path}`);
      }
      template.auth = a;
    } else {
      template.auth = { type: 'none' };
    }
    for (const name of ['batch_size', 'timeout_ms', 'max_retries', 'max_concurrency', 'template_concurrency', 'rate_limit_per_sec', 'max_age_seconds']) {
      const value = number(name);
      if (value !== undefined) template[name] = value;
    }
    const secret = control('signing_secret').value.trim();
    if (secret) template.signing_secret = secret;
    body.read(template);
    return template;
  }

  function clearErrors() {
    for (const el of form.querySelectorAll('.field-error')) {
      el.hidden = true;
      el.textContent = '';
    }
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  }

  /** Shows `message` next to the control the API's `field` names (focused unless `focus`
   * is false); the label the person sees, or null when no control has that path. */
  function fieldError(path, message, focus = true) {
    let target = null;
    const header = /^headers\.(.+)$/.exec(path || '');
    if (header) {
      for (const row of headerRows.children) {
        const key = row.querySelector('.kv-key');
        if (key.value.trim() === header[1]) target = key;
      }
      if (!target && /^\d+\.(key|value)$/.test(header[1])) target = control(path);
    }
    let name = path || '';
    while (!target && name) {
      const candidate = control(name);
      if (candidate instanceof Element && !candidate.closest('[hidden]')) target = candidate;
      name = name.includes('.') ? name.slice(0, name.lastIndexOf('.')) : '';
    }
    if (!target && path && path.startsWith('auth')) target = typeSelect;
    if (!target) return false;
    const details = target.closest('details');
    if (details) details.open = true;
    target.setAttribute('aria-invalid', 'true');
    const error = target.closest('.field, .kv')?.querySelector('.field-error');
    if (error) {
      error.textContent = message;
      error.hidden = false;
    }
    if (focus) target.focus();
    const row = target.closest('.kv');
    if (row) return `header ${row.querySelector('.kv-key').value.trim() || 'name'}`;
    return target.closest('.field')?.querySelector('label')?.firstChild?.textContent.trim() || path;
  }

  /** Each `[path, message]` beside its field, the first focused; the alert names them by
   * their labels, and says in full what could not be placed. */
  function showFieldErrors(errors, where) {
    const placed = [];
    const unplaced = [];
    errors.forEach(([path, message], n) => {
      const label = fieldError(path, sentence(message), n === 0);
      if (label) placed.push(label);
      else unplaced.push(`${path}: ${message}`);
    });
    const check = placed.length ? `Check ${listOf([...new Set(placed)])}.` : '';
    where.show([check, ...unplaced].filter(Boolean).join(' '));
  }

  /** Checks the form can be sent at all (every such field at once); the API checks the
   * rest. True when it can. */
  function precheck(template, where) {
    clearErrors();
    const errors = [];
    if (!template.id) errors.push(template.name || editing ? ['id', 'Enter an ID.'] : ['name', 'Enter a name.']);
    if (!template.url) errors.push(['url', 'Enter the destination URL, starting with https://.']);
    const seen = new Set();
    for (const row of headerRows.children) {
      const key = row.querySelector('.kv-key');
      const name = key.value.trim().toLowerCase();
      if (!name && row.querySelector('.kv-value').value === '') continue;
      if (!name) errors.push([key.name, 'Enter the header name.']);
      else if (seen.has(name)) errors.push([key.name, 'This header is already set above.']);
      seen.add(name);
    }
    if (errors.length) showFieldErrors(errors, where);
    return errors.length === 0;
  }

  function showApiError(err, where) {
    const body = err.body || {};
    if (body.error === 'invalid_field' && Array.isArray(body.errors) && body.errors.length) {
      showFieldErrors(body.errors.map((e) => [e.path, e.detail]), where);
    } else if (err.status !== 401) {
      where.show(err.message);
    }
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    status.hide();
    alert.hide();
    // One message at a time: an earlier Generate's is not shown again beside this one.
    tokenStatus.hide();
    tokenAlert.hide();
    const template = collect();
    if (!precheck(template, alert)) return;
    await busy(save, async () => {
      try {
        // Adding never replaces: the API refuses an id that is taken (412).
        const saved = await api('PUT', templatePath(template.id), template, editing ? {} : { 'If-None-Match': '*' });
        const test = saved.test;
        const name = saved.template.name || saved.template.id;
        const result = test ? ` Test request: HTTP ${test.status} in ${test.latency_ms} ms.` : '';
        guardLeaving(null);
        go('#/webhooks', ['status', `${saved.created ? 'Created' : 'Saved'} “${name}”.${result}`]);
      } catch (err) {
        const test = err.body?.test;
        if (err.body?.error === 'already_exists') {
          showFieldErrors([['id', 'ID already in use: choose another, or edit that webhook from the list.']], alert);
        } else if (err.body?.error === 'test_failed' && test) {
          alert.show(h('strong', {}, 'Test failed — not saved. '),
            // The plain-words reading when there is one; the exact error otherwise.
            [test.status ? `HTTP ${test.status}` : 'No answer', `${test.latency_ms} ms`, test.hint || test.error].filter(Boolean).join(' · '),
            test.answer ? h('div', { class: 'answer' }, 'The destination said: ', h('q', { class: 'mono small' }, test.answer)) : null);
          alert.scrollIntoView({ block: 'nearest' });
          alert.focus({ preventScroll: true });
        } else {
          showApiError(err, alert);
        }
      }
    });
  });

  generate.addEventListener('click', () => busy(generate, async () => {
    tokenStatus.hide();
    tokenAlert.hide();
    alert.hide();
    const template = collect();
    if (!precheck(template, tokenAlert)) return;
    try {
      const answer = await api('POST', `${templatePath(template.id)}/token`, template);
      const expires = formatTime(answer.expires_at);
      tokenStatus.show(h('dl', { class: 'token-result' },
        h('dt', {}, 'Token type'), h('dd', {}, answer.token_type),
        h('dt', {}, 'Scopes'), h('dd', {}, answer.scopes.length ? answer.scopes.join(' ') : 'none'),
        h('dt', {}, 'Expires'), h('dd', {}, `in ${duration(answer.expires_in)}`,
          expires ? h('span', { class: 'muted' }, ` (${expires.toLocaleString()})`) : null),
        h('dt', {}, 'Refresh token'), h('dd', {}, answer.refresh_token ? 'returned (kept for the next token)' : 'none returned'),
        h('dt', {}, 'Access token'), h('dd', { class: 'mono' }, answer.access_token)));
    } catch (err) {
      if (err.body?.error === 'invalid_field') showApiError(err, tokenAlert);
      else if (err.status !== 401) tokenAlert.show(`No token: ${err.message}`);
    }
  }));

  async function remove(btn) {
    const name = t.name || t.id;
    const ok = await confirmDialog({
      title: `Delete ${name}?`,
      message: 'Triggers that name this template will be dead-lettered (template_not_found) until it exists again.',
      confirm: 'Delete webhook',
    });
    if (!ok) return btn.focus();
    try {
      await api('DELETE', templatePath(t.id));
      guardLeaving(null);
      go('#/webhooks', ['status', `Deleted “${name}”.`]);
    } catch (err) {
      if (err.status !== 401) alert.show(`Could not delete: ${err.message}`);
    }
  }

  // A new webhook's ID is made from its Name until the ID is typed in itself, and an ID
  // another webhook has is flagged as soon as it is known.
  if (!editing) {
    const idInput = control('id');
    let idTyped = false;
    idInput.addEventListener('input', () => { idTyped = idInput.value !== ''; });
    control('name').addEventListener('input', () => {
      if (!idTyped) idInput.value = slug(control('name').value);
    });
    const checkTaken = async () => {
      const id = idInput.value.trim();
      if (!id) return;
      try {
        await api('GET', templatePath(id));
        if (idInput.value.trim() === id) fieldError('id', 'ID already in use: change it, or edit that webhook from the list.', false);
      } catch {
        // 404: free. Anything else is said when saving.
      }
    };
    idInput.addEventListener('change', checkTaken);
    control('name').addEventListener('change', checkTaken);
  }

  // Leaving with changes not saved asks first (links, Back, reload, sign out).
  const initial = JSON.stringify(collect());
  guardLeaving(() => form.isConnected && JSON.stringify(collect()) !== initial);
  if (!editing) control('name').focus();
}
