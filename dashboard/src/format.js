// Small DOM and formatting helpers shared by the views.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function phase(name) {
  return h("span", { class: `phase ${name}`, "data-phase": name }, name || "?");
}

export function revClass(rev, all) {
  const order = [...all].sort((a, b) => (Number(a) - Number(b)) || String(a).localeCompare(String(b)));
  return `rev${order.indexOf(rev) % 6}`;
}

// A bar of shares (percent) by revision, or by variant when ``prefix`` is "".
export function weightsBar(weights, prefix = "v") {
  const revs = Object.keys(weights || {});
  const bar = h("div", { class: "weights", "data-weights": JSON.stringify(weights || {}) });
  for (const rev of revs) {
    const w = Number(weights[rev]);
    if (w <= 0) continue;
    const seg = h("span", { class: revClass(rev, revs), title: `${prefix ? "revision " : ""}${rev}: ${w}%` }, `${prefix}${rev} ${w}%`);
    seg.style.width = `${w}%`;
    bar.append(seg);
  }
  return bar;
}

export function when(seconds) {
  if (!seconds) return "";
  return new Date(seconds * 1000).toLocaleTimeString();
}

export function toast(text, bad = false) {
  const box = document.getElementById("toast");
  const item = h("div", { class: bad ? "bad" : "" }, text);
  box.append(item);
  setTimeout(() => item.remove(), bad ? 8000 : 4000);
}

export function stepText(step) {
  if (step.setWeight !== undefined) return `weight ${step.setWeight}%`;
  if (step.pause !== undefined) return step.pause && step.pause.duration ? `pause ${step.pause.duration}` : "pause (until promoted)";
  if (step.analysis !== undefined) return "analysis";
  if (step.experiment !== undefined) return "experiment";
  if (step.setHeaderRoute !== undefined) return "header route";
  if (step.setMirrorRoute !== undefined) return "mirror";
  return Object.keys(step)[0] || "step";
}
