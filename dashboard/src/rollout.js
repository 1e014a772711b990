// One rollout: header and actions, steps timeline, live traffic charts, analysis runs,
// webhook and hook results, events and history; every part redrawn from its own event.
import { loadSession, post, signedIn } from "./api.js";
import { measurementChart, TrafficCharts } from "./charts.js";
import { h, phase, stepText, toast, weightsBar, when } from "./format.js";

const ACTIONS = [
  { id: "promote", label: "Promote", body: { full: false }, ask: "Promote {name} to its next step?" },
  { id: "promote-full", path: "promote", label: "Promote fully", body: { full: true }, ask: "Promote {name} fully, skipping every remaining step and analysis?" },
  { id: "pause", label: "Pause", ask: "Pause {name}?" },
  { id: "resume", label: "Resume", ask: "Resume {name}?" },
  { id: "abort", label: "Abort", danger: true, ask: "Abort {name}? All traffic goes back to the stable revision." },
  { id: "retry", label: "Retry", ask: "Retry {name} from its first step?" },
];
const HOOK_REASONS = /webhook|hook/i;

function confirmed(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

// scope: the API path and page link of the rollout's namespace (main.js).
export function rolloutView(root, name, scope) {
  const parts = {};
  for (const key of ["head", "actions", "steps", "traffic", "analysis", "hooks", "events", "history"]) {
    parts[key] = h("div", { "data-part": key });
  }
  const card = (title, key) => h("section", { class: "card" }, title ? h("h2", {}, title) : null, parts[key]);
  root.append(
    h("p", {}, h("a", { href: scope.link === "#" ? "#/" : scope.link }, "← all rollouts")),
    card(null, "head"),
    card("Actions", "actions"),
    card("Steps", "steps"),
    card("Traffic by revision (live)", "traffic"),
    card("Analysis", "analysis"),
    card("Webhooks and hooks", "hooks"),
    card("Events", "events"),
    card("History", "history"),
  );
  parts.traffic.classList.add("charts");
  const charts = new TrafficCharts(parts.traffic);
  const state = { status: null, spec: null, seenEvents: null, waitingFor: null };

  async function act(action, extra = {}) {
    const text = (action.ask || "").replace("{name}", name);
    if (!(await confirmed(text))) return;
    try {
      const doc = await post(`${scope.api}/rollouts/${encodeURIComponent(name)}/${action.path || action.id}`, { ...(action.body || {}), ...extra });
      toast(`${action.label}: done, ${name} is ${doc.phase}`);
      state.waitingFor = action.label;
    } catch (err) {
      toast(`${action.label} refused: ${err.message}${signedIn() ? "" : " (sign in with the API token first)"}`, true);
      // A restarted serve forgets sessions: show the sign-in field again.
      if (err.status === 401) loadSession().catch(() => {});
    }
  }

  function drawActions(history) {
    const buttons = ACTIONS.map((a) => h("button", { "data-action": a.id, class: a.danger ? "danger" : "", onclick: () => act(a) }, a.label));
    const revisions = (history || []).filter((r) => !r.current).map((r) => r.revision);
    const select = h("select", { "data-undo-target": "" }, revisions.map((n) => h("option", { value: n }, `revision ${n}`)));
    const undo = h(
      "button",
      {
        "data-action": "undo",
        disabled: revisions.length === 0,
        onclick: () => act({ id: "undo", label: "Undo", ask: `Roll ${name} back to revision ${select.value}?` }, { toRevision: Number(select.value) }),
      },
      "Undo to",
    );
    parts.actions.replaceChildren(h("div", { class: "actions" }, buttons, h("span", { class: "muted" }, "|"), undo, select));
  }

  function drawHead(s) {
    // (replaceChildren would show a null as the text "null": h() drops them)
    parts.head.replaceChildren(
      h("div", {},
      h("h1", {}, name, " ", phase(s.phase)),
      h("p", { "data-message": "" }, s.message || ""),
      s.error ? h("p", { class: "phase Failed" }, s.error) : null,
      h("p", { class: "muted" }, `${s.strategy} · current v${s.revision}` + (s.stableRevision ? ` · stable v${s.stableRevision}` : "") + (s.canaryRevision ? ` · canary v${s.canaryRevision}` : "") + ` · ${s.endpoint || ""}`),
      weightsBar(s.weights),
      h("p", { class: "muted" }, Object.entries(s.revisionStates || {}).map(([rev, r]) => `v${rev}: ${r.ready}/${r.desired} ready` + (r.notReady ? ` (${r.notReady})` : "")).join(" · ")),
      ),
    );
  }

  function drawSteps() {
    const s = state.status;
    const spec = state.spec;
    if (!s || !spec) return;
    const canary = ((spec.spec || {}).strategy || {}).canary;
    if (!canary || !(canary.steps || []).length) {
      parts.steps.replaceChildren(h("p", { class: "muted" }, `${s.strategy}: no steps`));
      return;
    }
    const at = s.currentStepIndex ?? canary.steps.length;
    const done = s.phase === "Healthy";
    parts.steps.replaceChildren(
      h(
        "ol",
        { class: "steps" },
        canary.steps.map((step, i) => h("li", { class: done || i < at ? "done" : i === at ? "current" : "", "data-step-index": i }, `${i + 1}. ${stepText(step)}`)),
      ),
    );
  }

  function drawAnalysis(runs) {
    if (!runs.length) {
      parts.analysis.replaceChildren(h("p", { class: "muted" }, "No analysis runs."));
      return;
    }
    parts.analysis.replaceChildren(
      ...runs
        .slice()
        .reverse()
        .slice(0, 12)
        .map((run) =>
          h(
            "div",
            { class: "run", "data-run": run.id },
            h("div", {}, phase(run.phase), ` ${run.kind} analysis of v${run.revision} · started ${when(run.startedAt)}`, run.message ? h("div", { class: "muted" }, run.message) : null),
            run.metrics.map((m) => {
              const chart = h("div", { "data-measurements": m.name });
              const box = h(
                "div",
                { class: "metric" },
                h(
                  "div",
                  {},
                  h("strong", {}, m.name),
                  " ",
                  phase(m.phase),
                  m.successCondition ? h("div", { class: "cond" }, `success: ${m.successCondition}`) : null,
                  m.failureCondition ? h("div", { class: "cond" }, `failure: ${m.failureCondition}`) : null,
                  h("div", { class: "muted" }, m.message || ""),
                  h("div", { class: "muted" }, `${m.measurements.length} measurement(s) kept`),
                ),
                chart,
              );
              queueMicrotask(() => measurementChart(chart, m) || chart.append(h("span", { class: "muted" }, m.measurements.map((x) => JSON.stringify(x.value)).join(", ") || "not measured yet")));
              return box;
            }),
          ),
        ),
    );
  }

  function eventRows(events) {
    return h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ["Time", "Reason", "Message", "Revision"].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        events
          .slice()
          .reverse()
          .map((e) => h("tr", { "data-event": e.reason, class: state.seenEvents !== null && e.time > state.seenEvents ? "event-new" : "" }, h("td", {}, when(e.time)), h("td", {}, e.reason), h("td", {}, e.message), h("td", {}, e.revision ?? ""))),
      ),
    );
  }

  function drawEvents(events) {
    parts.events.replaceChildren(eventRows(events));
    const hooks = events.filter((e) => HOOK_REASONS.test(e.reason));
    parts.hooks.replaceChildren(hooks.length ? eventRows(hooks) : h("p", { class: "muted" }, "No webhook or hook results."));
    const newest = events.length ? events[events.length - 1].time : 0;
    const fresh = events.filter((e) => state.seenEvents !== null && e.time > state.seenEvents);
    if (state.waitingFor && fresh.length) {
      // The rollout's own event (RolloutPromoted, RolloutAborted, ...) says what the action did.
      const e = fresh.find((x) => x.reason.startsWith("Rollout")) || fresh[fresh.length - 1];
      toast(`${state.waitingFor} → event ${e.reason}: ${e.message}`);
      state.waitingFor = null;
    }
    state.seenEvents = newest;
  }

  // A server that sees no requests (Kubernetes: the cluster's router counts them) says where
  // they are counted instead of sending counters.
  function drawTrafficNote(note) {
    if (parts.traffic.dataset.note === note) return;
    parts.traffic.dataset.note = note;
    parts.traffic.replaceChildren(h("p", { class: "muted", "data-traffic-note": "" }, note));
  }

  function drawHistory(revisions) {
    drawActions(revisions);
    parts.history.replaceChildren(
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, ["Revision", "Created", "Command", "Changes", ""].map((t) => h("th", {}, t)))),
        h(
          "tbody",
          {},
          revisions
            .slice()
            .reverse()
            .map((r) =>
              h(
                "tr",
                { "data-revision": r.revision },
                h("td", {}, `v${r.revision}`, r.current ? " (current)" : "", r.stable ? " (stable)" : ""),
                h("td", {}, when(r.createdAt)),
                h("td", {}, h("code", {}, (r.command || []).join(" "))),
                h("td", {}, (r.changes || []).map((c) => h("div", {}, typeof c === "string" ? c : c.text || JSON.stringify(c)))),
                h("td", {}, r.current ? null : h("button", { onclick: () => act({ id: "undo", label: "Undo", ask: `Roll ${name} back to revision ${r.revision}?` }, { toRevision: r.revision }) }, "Undo to this")),
              ),
            ),
        ),
      ),
    );
  }

  return {
    status: (s) => {
      state.status = s;
      drawHead(s);
      drawSteps();
    },
    spec: (spec) => {
      state.spec = spec;
      drawSteps();
    },
    history: (doc) => drawHistory(doc.revisions),
    events: (doc) => drawEvents(doc.events),
    analysis: (doc) => drawAnalysis(doc.runs),
    traffic: (doc) => (doc.note ? drawTrafficNote(doc.note) : charts.update(doc)),
    gone: () => parts.head.replaceChildren(h("h1", {}, `${name} was deleted`)),
    problem: (doc) => toast(doc.error, true),
  };
}
