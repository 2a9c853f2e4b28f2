// Building the page: elements from DOM calls and text nodes only, never from markup strings.

/** An element: `attrs` are attributes (true = present, false/null = absent), `on*` functions
 *  are listeners; children are nodes or strings (as text). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'value') {
      el.value = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

let uid = 0;
export const nextId = (prefix) => `${prefix}-${++uid}`;

/** A message region: `role="status"` for results, `role="alert"` for errors. */
export function region(role) {
  // Focusable from script (tabindex -1), so focus can move to what was just said.
  const el = h('div', { role, class: role === 'alert' ? 'alert' : 'notice', hidden: true, tabindex: '-1' });
  el.show = (...content) => {
    clear(el);
    append(el, content);
    el.hidden = content.length === 0;
  };
  el.hide = () => el.show();
  return el;
}

/** A labelled control: `<label>` + control + hint + the place for the API's message. */
export function field({ label, name, type = 'text', hint, options, value, attrs = {} }) {
  const id = nextId('f');
  const hintId = hint ? `${id}-hint` : null;
  const errorId = `${id}-error`;
  let control;
  if (options) {
    control = h('select', { id, name, ...attrs },
      options.map(([v, text]) => h('option', { value: v }, text)));
    if (value !== undefined) control.value = value;
  } else if (type === 'textarea') {
    control = h('textarea', { id, name, rows: '10', spellcheck: 'false', ...attrs });
    control.value = value ?? '';
  } else {
    control = h('input', { id, name, type, value, spellcheck: 'false', ...attrs });
  }
  control.setAttribute('aria-describedby', [hintId, errorId].filter(Boolean).join(' '));
  return h('div', { class: 'field', 'data-field': name },
    h('label', { for: id }, label, attrs.required ? h('span', { class: 'required' }, ' (required)') : null),
    control,
    hint ? h('p', { class: 'hint', id: hintId }, hint) : null,
    h('p', { class: 'field-error', id: errorId, hidden: true }));
}

export function button(text, attrs = {}) {
  return h('button', { type: 'button', ...attrs }, text);
}

/** Disables `btn` while `work` runs. */
export async function busy(btn, work) {
  btn.disabled = true;
  btn.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    btn.disabled = false;
    btn.removeAttribute('aria-busy');
  }
}

/** A modal confirmation; resolves true when confirmed. Escape or Cancel resolve false. */
export function confirmDialog({ title, message, confirm, danger = true }) {
  return new Promise((resolve) => {
    const titleId = nextId('dialog-title');
    const cancel = button('Cancel', { autofocus: true });
    const ok = button(confirm, { class: danger ? 'danger' : 'primary' });
    const dialog = h('dialog', { 'aria-labelledby': titleId, class: 'dialog' },
      h('h2', { id: titleId }, title),
      h('p', {}, message),
      h('div', { class: 'actions' }, cancel, ok));
    const close = (answer) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    cancel.addEventListener('click', () => close(false));
    ok.addEventListener('click', () => close(true));
    dialog.addEventListener('cancel', (e) => {
      e.preventDefault();
      close(false);
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

export function formatTime(iso) {
  if (!iso) return null;
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return null;
  return date;
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });

export function ago(date) {
  const seconds = Math.round((date.getTime() - Date.now()) / 1000);
  const units = [['year', 31536000], ['month', 2592000], ['day', 86400], ['hour', 3600], ['minute', 60]];
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size) return relative.format(Math.round(seconds / size), unit);
  }
  return relative.format(seconds, 'second');
}

export function timeEl(iso, fallback = '—') {
  const date = formatTime(iso);
  if (!date) return fallback;
  return h('time', { datetime: date.toISOString(), title: date.toLocaleString() }, ago(date));
}

export function duration(seconds) {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} days`;
}

export function plural(n, one, many = `${one}s`) {
  return `${n.toLocaleString()} ${n === 1 ? one : many}`;
}

/** A message as a sentence: capital first letter, full stop. */
export function sentence(message) {
  const text = String(message || '').trim();
  const capital = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

/** A template ID made from a name: lower case, words joined by `-`, at most 64 characters. */
export function slug(name) {
  return name.normalize('NFKD').replace(/[\u0300-\u036f]/g, '').toLowerCase()
    .replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 64).replace(/-+$/, '');
}

/** `a`, `a and b`, `a, b and c`. */
export function listOf(items) {
  return items.length < 2 ? items.join('') : `${items.slice(0, -1).join(', ')} and ${items.at(-1)}`;
}
