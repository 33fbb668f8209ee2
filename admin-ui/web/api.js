// Calls to the node's own API, and the session they carry. The browser keeps the session in
// localStorage under the original UI's keys (contracts §8.1), so a tab opened later is signed in.
import { reactive } from 'vue';

const stored = (key) => localStorage.getItem(key);

function decodeUser(token) {
  try {
    const payload = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    const name = payload.preferred_username || payload.name || payload.email || payload.sub;
    return { sub: payload.sub, name, email: payload.email || '' };
  } catch {
    return null;
  }
}

export const session = reactive({
  token: stored('hermes_token') || '',
  user: JSON.parse(stored('hermes_user') || 'null'),
  namespace: stored('hermes_namespace') || 'default',
  mustChangePassword: stored('hermes_must_change_password') === '1',
  // A call was refused with 401 while signed in: the sign-in dialog shows over the page, which
  // keeps whatever was being edited.
  expired: false,
});

// `refreshToken`: the provider's, with OpenID Connect sign-in (renews the session on a 401).
export function signIn(token, mustChangePassword, refreshToken) {
  session.token = token;
  session.user = decodeUser(token);
  session.mustChangePassword = !!mustChangePassword;
  session.expired = false;
  localStorage.setItem('hermes_token', token);
  localStorage.setItem('hermes_user', JSON.stringify(session.user));
  if (refreshToken) localStorage.setItem('hermes_refresh_token', refreshToken);
  if (mustChangePassword) localStorage.setItem('hermes_must_change_password', '1');
  else localStorage.removeItem('hermes_must_change_password');
}

export function signOut() {
  session.token = '';
  session.user = null;
  session.mustChangePassword = false;
  session.expired = false;
  for (const key of ['hermes_token', 'hermes_refresh_token', 'hermes_user', 'hermes_must_change_password']) {
    localStorage.removeItem(key);
  }
}

export function setNamespace(name) {
  session.namespace = name;
  localStorage.setItem('hermes_namespace', name);
}

export class ApiError extends Error {
  constructor(status, body) {
    super(describe(status, body));
    this.status = status;
    this.body = body;
    // Validation errors by field, as the API names them (`routes[0].uri`).
    this.fields = {};
    for (const e of (body && Array.isArray(body.errors) ? body.errors : [])) {
      this.fields[e.field] = e.message;
    }
  }
}

function describe(status, body) {
  if (body && Array.isArray(body.errors) && body.errors.length) {
    return body.errors.map((e) => `${e.field}: ${e.message}`).join('; ');
  }
  if (body && typeof body.error === 'string') return body.error;
  if (body && typeof body.message === 'string') return body.message;
  return `the node answered ${status}`;
}

// `expires: false` for a call whose 401 means a wrong answer, not an ended session (the current
// password on a password change).
// With OpenID Connect, an access token that expired is renewed once with the refresh token;
// the call is then made again. Several calls refused at once share one renewal.
let renewing = null;
async function renew() {
  const refreshToken = localStorage.getItem('hermes_refresh_token');
  if (!refreshToken) return false;
  renewing ||= (async () => {
    try {
      const res = await fetch('/api/auth/refresh', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({ refresh_token: refreshToken }),
      });
      if (!res.ok) return false;
      const r = await res.json();
      signIn(r.access_token, false, r.refresh_token || refreshToken);
      return true;
    } catch {
      return false;
    } finally {
      setTimeout(() => { renewing = null; }, 0);
    }
  })();
  return renewing;
}

export async function call(method, path, body, { expires = true, retried = false } = {}) {
  const headers = { Accept: 'application/json', 'X-Hermes-Namespace': session.namespace };
  if (session.token) headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
    });
  } catch (e) {
    throw new ApiError(0, { error: `the node could not be reached (${e.message})` });
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { error: text.trim() };
    }
  }
  if (res.status === 401 && session.token && expires) {
    if (!retried && await renew()) return call(method, path, body, { expires, retried: true });
    session.expired = true;
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

export const api = {
  get: (path) => call('GET', path),
  post: (path, body) => call('POST', path, body ?? {}),
  put: (path, body) => call('PUT', path, body ?? {}),
  del: (path) => call('DELETE', path),
};
