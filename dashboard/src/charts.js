// Live per-revision charts from the router's cumulative counters: each "traffic" event
// carries totals and histogram buckets; rates and percentiles come from the difference
// between two events (as Prometheus' rate() and histogram_quantile() would).
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { h } from "./format.js";

const KEEP = 180; // points per chart (three minutes at one event a second)
const COLORS = ["#2563eb", "#f59e0b", "#10b981", "#8b5cf6", "#ef4444", "#0ea5e9"];

export const PANELS = [
  { key: "rate", title: "Request rate (req/s)" },
  { key: "errors", title: "Error rate (5xx share)" },
  { key: "latency", title: "Latency p50 / p99 (s)", quantiles: [0.5, 0.99] },
  { key: "ttfb", title: "Time to first byte p99 (s)", quantiles: [0.99] },
  // Drawn once a revision has streamed a response (a model service answering in tokens).
  { key: "ttft", title: "Time to first token p99 (s)", quantiles: [0.99], streamed: true },
];

function total(requests) {
  return Object.values(requests || {}).reduce((a, b) => a + b, 0);
}

// The q-quantile of the observations between two cumulative histograms (linear inside the
// bucket, as histogram_quantile does); null when nothing was observed.
export function quantile(q, now, before) {
  const bounds = Object.keys(now.buckets);
  const counts = bounds.map((b) => now.buckets[b] - ((before && before.buckets[b]) || 0));
  const n = counts[counts.length - 1];
  if (!(n > 0)) return null;
  const rank = q * n;
  let lower = 0;
  let below = 0;
  for (let i = 0; i < bounds.length; i++) {
    const upper = bounds[i] === "+Inf" ? lower : Number(bounds[i]);
    if (counts[i] >= rank) {
      const inBucket = counts[i] - below;
      return inBucket > 0 ? lower + (upper - lower) * ((rank - below) / inBucket) : upper;
    }
    lower = upper;
    below = counts[i];
  }
  return lower;
}

export class TrafficCharts {
  constructor(container) {
    this.container = container;
    this.previous = null;
    this.times = [];
    this.values = {}; // panel series name -> array
    this.revisions = [];
    this.plots = {};
    this.streamed = false;
  }

  update(doc) {
    const revs = doc.revisions || {};
    const before = this.previous;
    this.previous = doc;
    if (!before) return;
    const dt = doc.time - before.time;
    if (!(dt > 0)) return;
    const names = Object.keys(revs).sort((a, b) => a - b);
    if (names.join() !== this.revisions.join()) this.reset(names);
    this.times.push(doc.time);
    for (const rev of names) {
      const now = revs[rev];
      const old = (before.revisions || {})[rev] || { requests: {}, latency: null, ttfb: null };
      const count = total(now.requests) - total(old.requests);
      const errs = (now.requests["5xx"] || 0) - ((old.requests || {})["5xx"] || 0);
      this.push(`rate:${rev}`, count / dt);
      this.push(`errors:${rev}`, count > 0 ? errs / count : null);
      for (const q of [0.5, 0.99]) this.push(`latency:${q}:${rev}`, quantile(q, now.latency, old.latency));
      this.push(`ttfb:0.99:${rev}`, quantile(0.99, now.ttfb, old.ttfb));
      const ttft = now.streams && now.streams.ttft;
      const value = ttft ? quantile(0.99, ttft, old.streams && old.streams.ttft) : null;
      this.push(`ttft:0.99:${rev}`, value);
      if (value !== null) this.streamed = true;
    }
    if (this.times.length > KEEP) {
      this.times.shift();
      for (const arr of Object.values(this.values)) arr.shift();
    }
    for (const panel of PANELS) if (!panel.streamed || this.streamed) this.draw(panel);
  }

  push(key, value) {
    const arr = (this.values[key] ||= new Array(this.times.length - 1).fill(null));
    arr.push(value);
  }

  series(panel) {
    const out = [];
    this.revisions.forEach((rev, i) => {
      for (const q of panel.quantiles || [null]) {
        const key = q === null ? `${panel.key}:${rev}` : `${panel.key}:${q}:${rev}`;
        const label = q === null ? `v${rev}` : `p${Math.round(q * 100)} v${rev}`;
        out.push({ key, label, color: COLORS[i % COLORS.length], dash: q === 0.5 ? [4, 4] : undefined });
      }
    });
    return out;
  }

  reset(revisions) {
    this.revisions = revisions;
    this.times = [];
    this.values = {};
    for (const plot of Object.values(this.plots)) plot.destroy();
    this.plots = {};
    this.container.replaceChildren();
  }

  draw(panel) {
    const series = this.series(panel);
    const data = [this.times, ...series.map((s) => this.values[s.key] || [])];
    let plot = this.plots[panel.key];
    if (!plot) {
      const box = h("div", { class: "chart", "data-chart": panel.key }, h("h3", {}, panel.title));
      this.container.append(box);
      const width = Math.max(360, box.clientWidth || 420);
      plot = new uPlot(
        {
          width,
          height: 180,
          series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, dash: s.dash, width: 2, spanGaps: true }))],
          axes: [{}, { size: 60 }],
          legend: { live: false },
        },
        data,
        box,
      );
      this.plots[panel.key] = plot;
    } else {
      plot.setData(data);
    }
    // What the chart shows now, for a reader of the page's DOM (and its tests).
    plot.root.dataset.points = String(this.times.length);
    const last = {};
    series.forEach((s, i) => (last[s.label] = data[i + 1][data[i + 1].length - 1] ?? null));
    plot.root.dataset.last = JSON.stringify(last);
  }
}

// One analysis metric: its measurements against the threshold(s) of its conditions. A
// measurement that is a number is one series; one that is an object ({p99, errorRate})
// gives a series per numeric field. False when nothing numeric was measured.
export function measurementChart(box, metric) {
  const points = metric.measurements.filter((m) => numericFields(m.value).length > 0);
  if (points.length === 0) return false;
  const times = points.map((m) => m.finishedAt);
  const fields = [...new Set(points.flatMap((m) => numericFields(m.value).map(([k]) => k)))];
  const series = [{}];
  const data = [times];
  fields.forEach((field, i) => {
    series.push({ label: field === "" ? metric.name : field, stroke: COLORS[i % COLORS.length], width: 2, points: { show: true } });
    data.push(points.map((m) => Object.fromEntries(numericFields(m.value))[field] ?? null));
  });
  for (const [which, t] of Object.entries(metric.thresholds || {})) {
    series.push({ label: `${which} ${t.operator} ${t.value}`, stroke: which === "failure" ? "#dc2626" : "#1f9d55", dash: [6, 4], width: 1.5 });
    data.push(times.map(() => t.value));
  }
  const plot = new uPlot({ width: 420, height: 140, series, legend: { live: false } }, data, box);
  plot.root.dataset.series = JSON.stringify(series.slice(1).map((s) => s.label));
  return true;
}

// [[field, number], ...] of a measured value: [["", v]] for a number, its numeric fields
// for an object, the first element of a one-element list (a Prometheus vector).
function numericFields(value) {
  if (typeof value === "number" && Number.isFinite(value)) return [["", value]];
  if (Array.isArray(value)) return value.length === 1 ? numericFields(value[0]) : [];
  if (value && typeof value === "object") {
    return Object.entries(value).filter(([, v]) => typeof v === "number" && Number.isFinite(v));
  }
  return [];
}
