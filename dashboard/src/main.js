// The dashboard served by `changeover serve` under /dashboard/. Reads stream from the API
// (server-sent events); actions need a session opened with the API token (api.js).
import "./style.css";
import { loadSession, onAuthChange, signedIn, signIn, signOut, stream } from "./api.js";
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

function route() {
  if (source) source.close();
  const view = document.getElementById("view");
  view.replaceChildren();
  const match = location.hash.match(/^#\/rollouts\/([^/]+)$/);
  if (match) {
    const name = decodeURIComponent(match[1]);
    document.title = `${name} · changeover`;
    source = stream(`/api/v1/rollouts/${encodeURIComponent(name)}/stream`, rolloutView(view, name), setLive);
  } else {
    document.title = "changeover";
    source = stream("/api/v1/stream", listView(view), setLive);
  }
}

let wasIn = null;
onAuthChange((isIn) => {
  drawAuth(isIn);
  if (isIn && wasIn === false && source && source.readyState === EventSource.CLOSED) route();
  wasIn = isIn;
});
window.addEventListener("hashchange", route);
loadSession().catch(() => drawAuth(false));
route();
