// The control API as the page uses it: reads with the browser's session cookie, actions
// with the CSRF token the session endpoint hands out (kept in memory, never in storage).
let csrf = null;
const listeners = new Set();

export function signedIn() {
  return csrf !== null;
}

export function onAuthChange(fn) {
  listeners.add(fn);
}

function setCsrf(value) {
  csrf = value;
  for (const fn of listeners) fn(signedIn());
}

async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  const reply = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let doc = null;
  try {
    doc = await reply.json();
  } catch {
    doc = { error: `HTTP ${reply.status}` };
  }
  if (!reply.ok) {
    const problems = (doc.problems || []).map((p) => `${p.path}: ${p.message}`).join("; ");
    const err = new Error(problems ? `${doc.error} (${problems})` : doc.error || `HTTP ${reply.status}`);
    err.status = reply.status;
    throw err;
  }
  return doc;
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body ?? {});

export async function loadSession() {
  const doc = await get("/api/v1/session");
  setCsrf(doc.authenticated ? doc.csrf : null);
}

export async function signIn(token) {
  const doc = await call("POST", "/api/v1/session", { token });
  setCsrf(doc.csrf);
}

export async function signOut() {
  await call("DELETE", "/api/v1/session");
  setCsrf(null);
}

// An EventSource that reports whether it is connected (the header's "live" mark).
export function stream(path, handlers, onState) {
  const source = new EventSource(path);
  source.onopen = () => onState(true);
  source.onerror = () => onState(false);
  for (const [kind, fn] of Object.entries(handlers)) {
    source.addEventListener(kind, (e) => fn(JSON.parse(e.data)));
  }
  return source;
}
