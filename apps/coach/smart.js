// SMART App Launch 2.0, standalone launch of a public app: discovery from
// {iss}/.well-known/smart-configuration, the authorization code flow with PKCE (S256, through
// Web Crypto), refresh and revocation. Works against any SMART server: `?iss=` names its FHIR
// base (default: this server's /fhir), `?client_id=` the app's registration (default `coach`).
// The session lives in sessionStorage: one tab, gone when the tab closes.

const SESSION = 'signaal-coach-session';
const PENDING = 'signaal-coach-pending';
export const SCOPE = 'openid fhirUser online_access user/*.rs';

export class SmartError extends Error {}

/** The app's redirect URI: its own directory, without query or fragment. */
export function redirectUri() {
  return new URL('./', location.href).href;
}

/** The server and client the page was opened for. */
export function launchSettings() {
  const q = new URLSearchParams(location.search);
  const iss = (q.get('iss') || `${location.origin}/fhir`).replace(/\/+$/, '');
  return { iss, clientId: q.get('client_id') || 'coach' };
}

function base64url(bytes) {
  let s = '';
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function random(n) {
  return base64url(crypto.getRandomValues(new Uint8Array(n)));
}

async function discover(iss) {
  const url = `${iss}/.well-known/smart-configuration`;
  const reply = await fetch(url, { headers: { Accept: 'application/json' } });
  if (!reply.ok) throw new SmartError(`${url}: ${reply.status}`);
  const config = await reply.json();
  if (!config.authorization_endpoint || !config.token_endpoint) {
    throw new SmartError(`${url} names no authorization and token endpoints`);
  }
  // S256 or nothing: never fall back to `plain` (a downgrade).
  if (!(config.code_challenge_methods_supported || []).includes('S256')) {
    throw new SmartError(`${iss} does not support PKCE with S256`);
  }
  return config;
}

/** Sends the browser to the server's authorize endpoint. */
export async function authorize() {
  const { iss, clientId } = launchSettings();
  const config = await discover(iss);
  const verifier = random(48);
  const challenge = base64url(
    await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  const state = random(24);
  sessionStorage.setItem(PENDING, JSON.stringify({
    state, verifier, iss, clientId, redirectUri: redirectUri(),
    tokenEndpoint: config.token_endpoint,
    revocationEndpoint: config.revocation_endpoint || null,
    search: location.search,
  }));
  const url = new URL(config.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: redirectUri(),
    scope: SCOPE,
    state,
    aud: iss,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  }).toString();
  location.assign(url.href);
}

async function tokenRequest(endpoint, form) {
  const reply = await fetch(endpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
    body: new URLSearchParams(form).toString(),
  });
  const body = await reply.json().catch(() => ({}));
  if (!reply.ok) {
    throw new SmartError(body.error_description || body.error || `token endpoint: ${reply.status}`);
  }
  return body;
}

/** The claims of an id_token (it came straight from the token endpoint over TLS: read, not verified). */
function claims(idToken) {
  try {
    const part = idToken.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part));
  } catch {
    return {};
  }
}

function store(session, answer) {
  session.accessToken = answer.access_token;
  session.expiresAt = Date.now() + (answer.expires_in || 300) * 1000;
  if (answer.refresh_token) session.refreshToken = answer.refresh_token;
  if (answer.scope) session.scope = answer.scope;
  if (answer.id_token) {
    const c = claims(answer.id_token);
    if (c.fhirUser) session.fhirUser = c.fhirUser;
    if (c.sub) session.user = c.sub;
  }
  sessionStorage.setItem(SESSION, JSON.stringify(session));
  return session;
}

/**
 * The page's launch state: a session after the redirect back (the code redeemed), the one
 * already held, or null (not logged in). Throws SmartError when the server refused.
 */
export async function resume() {
  const q = new URLSearchParams(location.search);
  if (q.has('code') || q.has('error')) {
    const pending = JSON.parse(sessionStorage.getItem(PENDING) || 'null');
    sessionStorage.removeItem(PENDING);
    // The code and state leave the address bar (and the history) at once.
    history.replaceState(null, '', redirectUri() + (pending?.search || ''));
    if (!pending || q.get('state') !== pending.state) {
      throw new SmartError('the answer does not belong to a log-in of this page (state)');
    }
    if (q.has('error')) {
      throw new SmartError(q.get('error_description') || q.get('error'));
    }
    const answer = await tokenRequest(pending.tokenEndpoint, {
      grant_type: 'authorization_code',
      code: q.get('code'),
      redirect_uri: pending.redirectUri,
      client_id: pending.clientId,
      code_verifier: pending.verifier,
    });
    return store({
      iss: pending.iss,
      clientId: pending.clientId,
      tokenEndpoint: pending.tokenEndpoint,
      revocationEndpoint: pending.revocationEndpoint,
    }, answer);
  }
  return JSON.parse(sessionStorage.getItem(SESSION) || 'null');
}

async function refresh(session) {
  if (!session.refreshToken) throw new SmartError('session ended');
  const answer = await tokenRequest(session.tokenEndpoint, {
    grant_type: 'refresh_token',
    refresh_token: session.refreshToken,
    client_id: session.clientId,
  });
  return store(session, answer);
}

/** A FHIR client over the session: `get(path)` answers the JSON, refreshing the token as needed. */
export function client(session, onEnded) {
  let current = session;
  async function send(path, retried) {
    if (current.expiresAt - Date.now() < 30000 && current.refreshToken) {
      current = await refresh(current).catch(() => current);
    }
    const url = /^https?:/.test(path) ? path : `${current.iss}/${path}`;
    const reply = await fetch(url, {
      headers: { Authorization: `Bearer ${current.accessToken}`, Accept: 'application/fhir+json' },
    });
    if (reply.status === 401) {
      if (!retried && current.refreshToken) {
        try {
          current = await refresh(current);
          return send(path, true);
        } catch { /* fall through: the session is over */ }
      }
      sessionStorage.removeItem(SESSION);
      onEnded();
      throw new SmartError('session ended');
    }
    const body = await reply.json().catch(() => null);
    if (!reply.ok) {
      const why = body?.issue?.map((i) => i.diagnostics).filter(Boolean).join('; ');
      throw new SmartError(`${url}: ${reply.status}${why ? ` ${why}` : ''}`);
    }
    return body;
  }
  return {
    get: (path) => send(path, false),
    session: () => current,
  };
}

/** Logs out: revokes the grant at the server (RFC 7009), then forgets the session. */
export async function logOut(session) {
  sessionStorage.removeItem(SESSION);
  if (!session?.revocationEndpoint) return;
  const token = session.refreshToken || session.accessToken;
  await fetch(session.revocationEndpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token, client_id: session.clientId }).toString(),
  }).catch(() => {});
}
