// The dashboard served by `changeover serve` under /dashboard/. Reads stream from the API
// (server-sent events); actions need a session opened with the API token (api.js).
import "./style.css";
import { get, loadSession, onAuthChange, signedIn, signIn, signOut, stream } from "./api.js";
import { h, toast } from "./format.js";
import { listView } from "./list.js";
import { rolloutView } from "./rollout.js";

let source = null;

function setLive(on) {
  const mark = document.getElementById("live");
  mark.textContent = on ? "live" : "reconnecting…";
  mark.classList.toggle("on", on);
  // A server beyond loopback needs the token for reads too: a refused stream does not
  // retry, so say why and wait for the sign-in (which restarts it).
  if (!on && source && source.readyState === EventSource.CLOSED) {
    mark.textContent = signedIn() ? "disconnected" : "sign in to read";
    if (!signedIn()) toast("this server needs the API token to show anything: sign in", true);
  }
}

function drawAuth(isIn) {
  const box = document.getElementById("auth");
  if (isIn) {
    box.replaceChildren(
      h("span", { "data-auth": "in" }, "signed in"),
      h("button", { id: "sign-out", onclick: () => signOut().catch((e) => toast(e.message, true)) }, "Sign out"),
    );
    return;
  }
  const input = h("input", { id: "token", type: "password", placeholder: "API token", autocomplete: "off" });
  const form = h(
    "form",
    {
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          await signIn(input.value.trim());
          toast("signed in: actions are enabled");
        } catch (err) {
          toast(`sign in refused: ${err.message}`, true);
        }
      },
    },
    input,
    " ",
    h("button", { id: "sign-in", type: "submit" }, "Sign in"),
  );
  box.replaceChildren(h("span", { "data-auth": "out", class: "muted" }, "read-only "), form);
}

// A cluster's dashboard (changeover dashboard --platform kubernetes) has namespaces: its
// pages are #/namespaces/NS[/rollouts/NAME] over /api/v1/namespaces/NS/...; its
// /api/v1/stream sends the namespaces, and the page goes to the starting one. The local
// dashboard's pages stay #/ and #/rollouts/NAME over /api/v1/....
const LOCAL = { api: "/api/v1", link: "#" };

function scopeOf(namespace) {
  const ns = encodeURIComponent(namespace);
  return { api: `/api/v1/namespaces/${ns}`, link: `#/namespaces/${ns}`, namespace };
}

// current: the namespace shown, or "" for every namespace's list (--all-namespaces).
function drawNamespaces(doc, current) {
  const select = document.getElementById("namespace");
  const names = current === "" || doc.namespaces.includes(current) ? doc.namespaces : [current, ...doc.namespaces];
  const options = names.map((n) => h("option", { value: n, selected: n === current }, n));
  if (doc.all) options.unshift(h("option", { value: "", selected: current === "" }, "all namespaces"));
  select.replaceChildren(...options);
  select.title = doc.listed ? "namespace" : "namespace (you may not list the cluster's namespaces)";
  select.hidden = false;
}

function showRollout(view, scope, name) {
  document.title = `${name}${scope.namespace ? ` · ${scope.namespace}` : ""} · changeover`;
  source = stream(`${scope.api}/rollouts/${encodeURIComponent(name)}/stream`, rolloutView(view, name, scope), setLive);
}

function route() {
  if (source) source.close();
  const view = document.getElementById("view");
  view.replaceChildren();
  const scoped = location.hash.match(/^#\/namespaces\/([^/]+)(?:\/rollouts\/([^/]+))?$/);
  const match = location.hash.match(/^#\/rollouts\/([^/]+)$/);
  if (scoped) {
    const scope = scopeOf(decodeURIComponent(scoped[1]));
    get("/api/v1/namespaces")
      .then((doc) => drawNamespaces(doc, scope.namespace))
      .catch((e) => toast(`namespaces: ${e.message}`, true));
    if (scoped[2]) {
      showRollout(view, scope, decodeURIComponent(scoped[2]));
    } else {
      document.title = `${scope.namespace} · changeover`;
      source = stream(`${scope.api}/stream`, listView(view, scope), setLive);
    }
  } else if (match) {
    showRollout(view, LOCAL, decodeURIComponent(match[1]));
  } else {
    document.title = "changeover";
    const handlers = listView(view, LOCAL);
    // A cluster's dashboard: every namespace's list (--all-namespaces), or the starting one.
    handlers.namespaces = (doc) => (doc.all ? drawNamespaces(doc, "") : location.replace(scopeOf(doc.start).link));
    source = stream("/api/v1/stream", handlers, setLive);
  }
}

document.getElementById("namespace").addEventListener("change", (e) => {
  location.hash = e.target.value === "" ? "#/" : scopeOf(e.target.value).link;
});

let wasIn = null;
onAuthChange((isIn) => {
  drawAuth(isIn);
  if (isIn && wasIn === false && source && source.readyState === EventSource.CLOSED) route();
  wasIn = isIn;
});
window.addEventListener("hashchange", route);
loadSession().catch(() => drawAuth(false));
route();
