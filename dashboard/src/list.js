// The list page: one section per kind of resource the server streams on /api/v1/stream.
// Extension point: a new kind (flags) registers its renderer in SECTIONS under the name
// its server-side list carries (api.streams.Streams.add_list), and appears here live.
import { h, phase, weightsBar } from "./format.js";

// A row of every namespace's list (--all-namespaces) carries its namespace and links there.
function rolloutRow(r, scope) {
  const link = r.namespace ? `#/namespaces/${encodeURIComponent(r.namespace)}` : scope.link;
  const revs = Object.keys(r.revisionStates || r.replicas || {});
  const ready = revs.map((rev) => {
    const s = (r.revisionStates || {})[rev] || {};
    return h("div", {}, `v${rev}: ${s.ready ?? r.replicas[rev]}/${s.desired ?? "?"}`);
  });
  const step = r.totalSteps ? `${Math.min((r.currentStepIndex ?? 0) + 1, r.totalSteps)} / ${r.totalSteps}` : "–";
  const roles = [`current v${r.revision}`];
  if (r.stableRevision) roles.push(`stable v${r.stableRevision}`);
  if (r.canaryRevision) roles.push(`canary v${r.canaryRevision}`);
  return h(
    "tr",
    { "data-rollout": r.name },
    r.namespace ? h("td", { "data-namespace": r.namespace }, r.namespace) : null,
    h("td", {}, h("a", { href: `${link}/rollouts/${encodeURIComponent(r.name)}` }, r.name)),
    h("td", {}, phase(r.phase), h("div", { class: "muted" }, r.message || "")),
    h("td", {}, r.strategy),
    h("td", { "data-step": "" }, step),
    h("td", {}, weightsBar(r.weights)),
    h("td", {}, roles.join(", ")),
    h("td", {}, ready),
  );
}

function rollouts(docs, scope) {
  if (!docs.length) return h("p", { class: "muted" }, "No rollouts yet: `changeover apply -f rollout.yaml`.");
  return h(
    "table",
    { id: "rollouts" },
    h("thead", {}, h("tr", {}, [docs[0].namespace ? "Namespace" : null, "Rollout", "Phase", "Strategy", "Step", "Traffic", "Revisions", "Ready"].map((t) => t && h("th", {}, t)))),
    h("tbody", {}, docs.map((r) => rolloutRow(r, scope))),
  );
}

function flags(docs) {
  if (!docs.length) return h("p", { class: "muted" }, "No flags.");
  return h(
    "table",
    { id: "flags" },
    h("thead", {}, h("tr", {}, ["Flag", "Phase", "Key", "Type", "Default", "Split", "Rules"].map((t) => h("th", {}, t)))),
    h(
      "tbody",
      {},
      docs.map((f) =>
        h(
          "tr",
          { "data-flag": f.name },
          h("td", {}, f.name),
          h("td", {}, phase(f.phase), h("div", { class: "muted" }, f.message || "")),
          h("td", {}, h("code", {}, f.key)),
          h("td", {}, f.type),
          h("td", {}, f.defaultVariant ?? ""),
          h("td", {}, weightsBar(f.split || {}, "")),
          h("td", {}, f.rules ?? 0),
        ),
      ),
    ),
  );
}

// Every kind the server streams; a kind the server does not stream (no flags on this
// platform) shows nothing.
export const SECTIONS = {
  rollouts: { title: "Rollouts", render: rollouts },
  flags: { title: "Flags", render: flags, optional: true },
};

// scope: where the rows link to (main.js: the local pages, or a cluster's namespace).
export function listView(root, scope) {
  const boxes = {};
  const cards = {};
  for (const [kind, section] of Object.entries(SECTIONS)) {
    boxes[kind] = h("div", { "data-section": kind }, h("p", { class: "muted" }, "loading…"));
    cards[kind] = h("section", { class: "card", hidden: section.optional }, h("h2", {}, section.title), boxes[kind]);
    root.append(cards[kind]);
  }
  const handlers = {};
  for (const [kind, section] of Object.entries(SECTIONS)) {
    handlers[kind] = (doc) => {
      cards[kind].hidden = false;
      // A list that could not be read (a namespace the cluster's RBAC hides) says why.
      const shown = doc.error ? h("p", { class: "phase Failed", "data-list-error": "" }, doc.error) : section.render(doc[kind] || [], scope);
      boxes[kind].replaceChildren(shown);
    };
  }
  return handlers;
}
