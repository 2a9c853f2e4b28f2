// The web console (docs/console.md): plain JavaScript modules, no build step, no
// dependency. It talks only to the admin API under /v1 with the token the user signed in
// with; markup is only ever built with DOM calls and text nodes (dom.js), never from
// strings.

import { api, onUnauthorized, token } from './api.js';
import { campaignStats } from './campaigns.js';
import { eventTimeline } from './delivery-log.js';
import { deadLetters } from './dead-letters.js';
import { clear, confirmDialog } from './dom.js';
import { guardLeaving, hasUnsavedChanges } from './page.js';
import { templateForm } from './template-form.js';
import { webhookList } from './webhooks.js';

const $ = (id) => document.getElementById(id);

/** A URL part as text; a malformed escape is left as it is. */
function decode(part) {
  try {
    return decodeURIComponent(part);
  } catch {
    return part;
  }
}

/** Back to the sign-in form; `message` says why: a refusal (an alert) or, with
 * `{ notice: true }`, news (a status, as after Sign out). */
function signOut(message, { notice = false } = {}) {
  token.clear();
  showSignIn(message, notice);
}

function showSignIn(message, notice = false) {
  $('nav').hidden = true;
  $('sign-out').hidden = true;
  clear($('view'));
  $('sign-in').hidden = false;
  for (const [id, shown] of [['sign-in-alert', !notice], ['sign-in-status', notice]]) {
    $(id).textContent = shown ? message || '' : '';
    $(id).hidden = !shown || !message;
  }
  document.title = 'Sign in · webhook-dispatcher';
  $('token').focus();
}

async function signIn(event) {
  event.preventDefault();
  const input = $('token');
  const value = input.value.trim();
  if (!value) return;
  token.set(value);
  input.value = '';
  try {
    await api('GET', '/v1/templates?limit=1');
  } catch (err) {
    if (err.status === 401) return; // signOut showed the message
  }
  if (!location.hash || location.hash === '#/') location.hash = '#/webhooks';
  route();
}

/** Whether the page may be left now: with unsaved changes, only once the user says so. */
async function mayLeave() {
  if (!hasUnsavedChanges()) return true;
  const discard = await confirmDialog({
    title: 'Discard unsaved changes?',
    message: 'What you changed in this form has not been saved.',
    confirm: 'Discard changes',
  });
  if (discard) guardLeaving(null);
  return discard;
}

let shown = location.hash; // the route on screen

/** Links within the console ask first when the form has unsaved changes. */
async function followLink(event) {
  const link = event.target.closest('a[href^="#"]');
  if (!link || !hasUnsavedChanges()) return;
  event.preventDefault();
  if (await mayLeave()) location.hash = link.getAttribute('href');
}

/** Back, Forward or a typed URL: the route has changed already, so it is put back while
 * the user decides. */
async function hashChanged() {
  if (hasUnsavedChanges() && location.hash !== shown) {
    const wanted = location.hash;
    history.pushState(null, '', shown || '#/');
    if (await mayLeave()) location.hash = wanted;
    return;
  }
  route();
}

function route() {
  shown = location.hash;
  guardLeaving(null);
  if (!token.get()) return showSignIn();
  $('sign-in').hidden = true;
  $('nav').hidden = false;
  $('sign-out').hidden = false;
  const [path, query = ''] = location.hash.replace(/^#/, '').split('?');
  const parts = path.split('/').filter(Boolean).map(decode);
  const params = new URLSearchParams(query);
  const section = parts[0] || 'webhooks';
  for (const link of document.querySelectorAll('#nav a')) {
    if (link.dataset.section === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const view = clear($('view'));
  if (section === 'webhooks' && parts[1] === 'new') return templateForm(view, null);
  if (section === 'webhooks' && parts[1] === 'edit' && parts[2]) return templateForm(view, parts[2]);
  if (section === 'campaigns') return campaignStats(view, parts[1]);
  if (section === 'dead-letters') return deadLetters(view, params);
  if (section === 'events' && parts[1]) return eventTimeline(view, parts[1]);
  return webhookList(view, params);
}

onUnauthorized(signOut);
$('sign-in-form').addEventListener('submit', signIn);
$('sign-out').addEventListener('click', async () => {
  if (await mayLeave()) signOut('Signed out.', { notice: true });
});
document.addEventListener('click', followLink);
window.addEventListener('hashchange', hashChanged);
// A reload or a closed tab: the browser's own question.
window.addEventListener('beforeunload', (event) => {
  if (!hasUnsavedChanges()) return;
  event.preventDefault();
  event.returnValue = ''; // what older browsers look for
});
route();
