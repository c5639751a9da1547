// Sign-in for the page: GET /config says what the service expects; then the authorization code
// flow with PKCE against the OIDC issuer (jwt), or an API key pasted for this tab (api_key).
// Tokens live in sessionStorage, never localStorage: they end with the tab.
const store = sessionStorage;
const TOKENS = "relay.tokens";
const PENDING = "relay.sign-in";
const API_KEY = "relay.api-key";
const REFRESH_MARGIN_MS = 60_000; // refresh a token this long before it expires

const base64url = (bytes) =>
  btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const randomText = () => base64url(crypto.getRandomValues(new Uint8Array(32)));
const claimsOf = (jwt) => JSON.parse(atob(jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
// Bumped by sign-out, so a refresh still under way cannot store its tokens afterwards.
let generation = 0;

async function getJson(url, what) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${what} failed: HTTP ${response.status}`);
  return response.json();
}

/**
 * Read the service's sign-in settings and finish a sign-in coming back from the issuer.
 * Never rejects: a problem is in `session.error`, and the page goes on (signed in or not).
 */
export async function setUpSignIn(configUrl) {
  const session = { modes: [], auth: {}, issuer: null, error: null, redirectUri: location.origin + location.pathname };
  try {
    session.config = await getJson(configUrl, "reading the sign-in settings");
    session.auth = session.config.auth;
    session.modes = session.auth.modes;
    if (session.modes.includes("jwt")) {
      const discovery = `${session.auth.issuer.replace(/\/$/, "")}/.well-known/openid-configuration`;
      session.issuer = await getJson(discovery, "reaching the sign-in issuer");
      await finishSignIn(session);
    }
  } catch (error) {
    session.error = error.message;
  }
  return session;
}

/** Who is signed in, for the header: an email or subject, "API key", or null. */
export function signedInAs(session) {
  const tokens = JSON.parse(store.getItem(TOKENS) ?? "null");
  if (tokens) {
    const claims = claimsOf(tokens.idToken);
    return claims.email ?? claims.sub;
  }
  return store.getItem(API_KEY) ? "API key" : null;
}

/** Go to the issuer's sign-in page; it comes back to this page with a code. */
export async function signIn(session) {
  const verifier = randomText();
  const state = randomText();
  store.setItem(PENDING, JSON.stringify({ verifier, state }));
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const url = new URL(session.issuer.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: session.auth.clientId,
    redirect_uri: session.redirectUri,
    scope: session.auth.scopes,
    state,
    code_challenge: challenge,
    code_challenge_method: "S256",
  });
  location.assign(url);
}

/** Keep an API key for this tab only. */
export function useApiKey(key) {
  store.setItem(API_KEY, key.trim());
}

/** Forget the tokens or key; with an issuer session, end that too. */
export function signOut(session) {
  generation += 1;
  const tokens = store.getItem(TOKENS);
  store.removeItem(TOKENS);
  store.removeItem(API_KEY);
  const end = session.issuer?.end_session_endpoint;
  if (tokens && end) {
    // OIDC RP-initiated logout takes post_logout_redirect_uri, Cognito's /logout takes logout_uri:
    // send both. No id_token_hint: it would stay in the browser's history.
    const url = new URL(end);
    url.search = new URLSearchParams({
      client_id: session.auth.clientId,
      post_logout_redirect_uri: session.redirectUri,
      logout_uri: session.redirectUri,
    });
    location.assign(url);
  }
}

/** What streamChat sends: the API key header, if one was pasted. */
export function signInHeaders() {
  const key = store.getItem(API_KEY);
  return key ? { "X-Api-Key": key } : {};
}

/** The token held now, without a refresh: for a request sent as the page closes, which cannot wait. */
export function currentToken(session) {
  const tokens = JSON.parse(store.getItem(TOKENS) ?? "null");
  if (!tokens) return null;
  return session.auth.requiredScope ? tokens.accessToken : tokens.idToken;
}

/**
 * The token to send, refreshed first if it is about to expire; null when not signed in (or no
 * longer: a refused refresh signs out). The access token when the service requires a scope,
 * since only access tokens carry scopes; else the id token, which names the user.
 */
export async function getToken(session) {
  let tokens = JSON.parse(store.getItem(TOKENS) ?? "null");
  if (!tokens) return null;
  if (tokens.expiresAt - Date.now() < REFRESH_MARGIN_MS) {
    if (!tokens.refreshToken) {
      store.removeItem(TOKENS);
      return null;
    }
    tokens = await requestTokens(session, {
      grant_type: "refresh_token",
      refresh_token: tokens.refreshToken,
      client_id: session.auth.clientId,
    }, tokens.refreshToken);
  }
  if (!tokens) return null;
  return session.auth.requiredScope ? tokens.accessToken : tokens.idToken;
}

async function finishSignIn(session) {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error")) return;
  const pending = JSON.parse(store.getItem(PENDING) ?? "null");
  store.removeItem(PENDING);
  // The code is single-use and worthless without the verifier, but keep it out of history anyway.
  history.replaceState(null, "", session.redirectUri);
  if (params.has("error")) throw new Error(`sign-in failed: ${params.get("error_description") ?? params.get("error")}`);
  if (!pending || params.get("state") !== pending.state) throw new Error("sign-in failed: the state does not match");
  await requestTokens(session, {
    grant_type: "authorization_code",
    code: params.get("code"),
    redirect_uri: session.redirectUri,
    client_id: session.auth.clientId,
    code_verifier: pending.verifier,
  });
}

async function requestTokens(session, form, previousRefreshToken = null) {
  const started = generation;
  const response = await fetch(session.issuer.token_endpoint, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(form),
  });
  if (response.status === 400 || response.status === 401) {
    // The issuer refuses the code or refresh token (invalid_grant): signed out, as if the tab had closed.
    store.removeItem(TOKENS);
    return null;
  }
  if (!response.ok) throw new Error(`the sign-in issuer answered HTTP ${response.status}; try again`);
  const answer = await response.json();
  if (generation !== started) return null; // signed out meanwhile
  const tokens = {
    idToken: answer.id_token,
    accessToken: answer.access_token,
    // Cognito sends no new refresh token on refresh: the old one stays valid.
    refreshToken: answer.refresh_token ?? previousRefreshToken,
    expiresAt: claimsOf(answer.id_token).exp * 1000,
  };
  store.setItem(TOKENS, JSON.stringify(tokens));
  return tokens;
}
