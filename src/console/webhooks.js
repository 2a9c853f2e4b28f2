// Webhooks: the list, with search and cursor paging.

import { api, templatePath } from './api.js';
import { button, clear, confirmDialog, h, timeEl } from './dom.js';
import { pageHead, regions } from './page.js';
import { GRANT_TYPES } from './template-form.js';

const PAGE_SIZE = 20;

const listState = { query: '', cursors: [null] };

function authLabel(auth) {
  if (!auth || auth.type === 'none') return 'None';
  if (auth.type === 'basic') return 'Basic';
  const grant = GRANT_TYPES.find(([v]) => v === auth.grant_type);
  return `OAuth 2.0 · ${grant ? grant[1].toLowerCase() : auth.grant_type}`;
}

function hostOf(url) {
  try {
    return new URL(url).host;
  } catch {
    return url; // a URL with placeholders in its host
  }
}

/** The list's search and page as the URL keeps them (`#/webhooks?q=crm&after=x`), so a
 * reload, Back or a shared link shows the same page. */
function keepInUrl() {
  const params = new URLSearchParams();
  if (listState.query) params.set('q', listState.query);
  const after = listState.cursors.at(-1);
  if (after) params.set('after', after);
  const hash = `#/webhooks${params.size ? `?${params}` : ''}`;
  if (location.hash !== hash) history.replaceState(null, '', hash);
}

export async function webhookList(view, params = new URLSearchParams()) {
  // A URL with a search or a page wins over the one last shown.
  if (params.has('q') || params.has('after')) {
    listState.query = params.get('q') || '';
    listState.cursors = params.get('after') ? [null, params.get('after')] : [null];
  }
  pageHead(view, 'Webhooks', h('a', { class: 'button primary', href: '#/webhooks/new' }, 'Add Webhook'));
  const search = h('input', {
    type: 'search', id: 'webhook-search', name: 'q', value: listState.query,
    placeholder: 'Name, id or URL', autocomplete: 'off',
  });
  const searchForm = h('form', { role: 'search', class: 'toolbar' },
    h('label', { for: 'webhook-search' }, 'Search webhooks'), search,
    h('button', { type: 'submit' }, 'Search'));
  view.append(searchForm);
  const { status, alert } = regions(view);
  const body = h('div', { class: 'card flush' });
  view.append(body);

  searchForm.addEventListener('submit', (e) => {
    e.preventDefault();
    listState.query = search.value.trim();
    listState.cursors = [null];
    load();
  });

  /** Loads started so far: an answer that comes back after a later load started is stale
   * (a search typed while the page's first list was on its way) and is dropped. */
  let loads = 0;

  /** Shows the current page; `focus` then moves to its first row (after Next or Previous)
   * or to what was said (after a delete), never to the page's top. */
  async function load(focus) {
    const mine = ++loads;
    keepInUrl();
    const page = listState.cursors.length - 1;
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    const after = listState.cursors[page];
    if (after) params.set('after', after);
    if (listState.query) params.set('q', listState.query);
    body.setAttribute('aria-busy', 'true');
    let answer;
    try {
      answer = await api('GET', `/v1/templates?${params}`);
    } catch (err) {
      if (mine === loads && err.status !== 401) alert.show(err.message);
      return;
    } finally {
      if (mine === loads) body.removeAttribute('aria-busy');
    }
    if (mine !== loads) return;
    clear(body);
    const templates = answer.templates || [];
    if (templates.length === 0) {
      body.append(h('div', { class: 'empty' },
        listState.query
          ? h('p', {}, `No webhook matches “${listState.query}”.`)
          : [h('p', { class: 'empty-title' }, 'No webhooks yet'),
            h('p', { class: 'muted' }, 'A webhook sends campaign triggers to a destination URL. Add one to start.')]));
    } else {
      body.append(table(templates));
    }
    const previous = button('Previous', { disabled: page === 0 });
    const next = button('Next', { disabled: !answer.next_after });
    previous.addEventListener('click', () => {
      listState.cursors.pop();
      load('rows');
    });
    next.addEventListener('click', () => {
      listState.cursors.push(answer.next_after);
      load('rows');
    });
    if (page > 0 || answer.next_after) {
      body.append(h('nav', { class: 'pager', 'aria-label': 'Pages' },
        previous, h('span', { class: 'muted' }, `Page ${page + 1}`), next));
    }
    if (focus === 'rows') (body.querySelector('tbody a') || body.querySelector('.pager button:not([disabled])'))?.focus();
    if (focus === 'status') status.focus();
  }

  function table(templates) {
    const rows = templates.map((t) => {
      const edit = `#/webhooks/edit/${encodeURIComponent(t.id)}`;
      const del = button('Delete', { class: 'quiet danger-text', 'aria-label': `Delete ${t.name || t.id}` });
      del.addEventListener('click', () => remove(t, del));
      return h('tr', {},
        h('th', { scope: 'row' },
          h('a', { href: edit }, t.name || t.id),
          h('div', { class: 'muted mono small' }, t.id)),
        h('td', { 'data-label': 'Method' }, h('span', { class: `method m-${t.method.toLowerCase()}` }, t.method)),
        h('td', { class: 'mono', 'data-label': 'Destination' }, hostOf(t.url)),
        h('td', { 'data-label': 'Auth' }, authLabel(t.auth)),
        h('td', { 'data-label': 'Last change' }, timeEl(t.updated_at)),
        h('td', { class: 'row-actions' },
          h('a', { href: edit, 'aria-label': `Edit ${t.name || t.id}` }, 'Edit'), del));
    });
    return h('table', { class: 'cards' },
      h('caption', { class: 'visually-hidden' }, 'Webhooks'),
      h('thead', {}, h('tr', {},
        ['Name', 'Method', 'Destination', 'Auth', 'Last change'].map((c) => h('th', { scope: 'col' }, c)),
        h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')))),
      h('tbody', {}, rows));
  }

  async function remove(t, btn) {
    const name = t.name || t.id;
    const ok = await confirmDialog({
      title: `Delete ${name}?`,
      message: 'Triggers that name this template will be dead-lettered (template_not_found) until it exists again.',
      confirm: 'Delete webhook',
    });
    if (!ok) return btn.focus();
    try {
      await api('DELETE', templatePath(t.id));
      status.show(`Deleted “${name}”.`);
      alert.hide();
      load('status');
    } catch (err) {
      if (err.status !== 401) alert.show(`Could not delete “${name}”: ${err.message}`);
    }
  }

  load();
}
