// The admin API under /v1, with the token the user signed in with (kept in sessionStorage:
// this tab only, never in a URL).

const TOKEN_KEY = 'webhook-dispatcher.admin-token';

let unauthorized = () => {};

/** What to do when the API refuses the token (sign out, say why). */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** One call; `extraHeaders` go with it (`If-None-Match: *` for a create-only save). */
export async function api(method, path, body, extraHeaders = {}) {
  const headers = { ...extraHeaders, Accept: 'application/json', Authorization: `Bearer ${token.get() || ''}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
    });
  } catch {
    throw new ApiError(0, { error: 'unreachable', message: 'The service did not answer. Is it running?' });
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { error: 'not_json', message: `The service answered HTTP ${response.status} without JSON.` };
    }
  }
  if (response.status === 401) {
    unauthorized('The admin token was refused. Sign in again.');
    throw new ApiError(401, data);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const templatePath = (id) => `/v1/templates/${encodeURIComponent(id)}`;
