// What every page has: a heading that takes the focus, status and alert regions, and a way
// to move to another page with a message for it.

import { h, region } from './dom.js';

let flash = null; // a message for the next page: [role, text]
let unsaved = null; // the page's "is anything unsaved?" question, while it has one

/** Set by a page with a form: `dirty()` says whether leaving now would lose changes.
 * `null` once they are saved (or discarded). Every page change clears it. */
export function guardLeaving(dirty) {
  unsaved = dirty;
}

export function hasUnsavedChanges() {
  return Boolean(unsaved?.());
}

export function pageHead(view, title, ...actions) {
  document.title = `${title} · webhook-dispatcher`;
  const heading = h('h1', { tabindex: '-1' }, title);
  view.append(h('div', { class: 'page-head' }, heading, h('div', { class: 'actions' }, actions)));
  heading.focus({ preventScroll: true });
  return heading;
}

/** The status and alert regions of a page, showing the flash message if there is one. */
export function regions(view) {
  const status = region('status');
  const alert = region('alert');
  view.append(status, alert);
  if (flash) {
    (flash[0] === 'alert' ? alert : status).show(flash[1]);
    flash = null;
  }
  return { status, alert };
}

export function go(hash, message) {
  flash = message || null;
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else location.hash = hash;
}
