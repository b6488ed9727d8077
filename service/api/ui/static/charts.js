// Inline SVG charts built with DOM calls (the CSP forbids inline styles and scripts, and we
// ship no chart library). Labels are text nodes, so values cannot inject markup.

import { s } from "./dom.js";

const WIDTH = 600;
const HEIGHT = 150;
const PAD = { top: 10, right: 8, bottom: 22, left: 34 };

function niceMax(value) {
  if (value <= 5) return 5;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) {
    if (step * magnitude >= value) return step * magnitude;
  }
  return 10 * magnitude;
}

function timeLabel(epochSeconds, bucketSeconds) {
  const d = new Date(epochSeconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return bucketSeconds < 3600 ? time : `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

/**
 * A per-minute bar chart. points: [{minute, value}], oldest first.
 * `title` names the series ("completed"), `kind` picks the colour class.
 */
export function minuteBars(points, { title, kind }) {
  return timeBars(points.map((p) => ({ start: p.minute * 60, value: p.value })), { title, kind, bucketSeconds: 60 });
}

/**
 * A bar per time bucket. points: [{start (epoch s), value}], oldest first; `bucketSeconds`
 * (60 or 3600) names the bucket in labels; `unit` follows values ("ms") when they are not counts.
 */
export function timeBars(points, { title, kind, bucketSeconds, unit = "" }) {
  const total = points.reduce((sum, p) => sum + p.value, 0);
  const max = niceMax(Math.max(0, ...points.map((p) => p.value)));
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const slot = plotW / Math.max(points.length, 1);
  const per = bucketSeconds < 3600 ? "minute" : "hour";
  const svg = s("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    class: `chart ${kind}`,
    role: "img",
    "aria-label": unit
      ? `${title} per ${per} over the last ${points.length} ${per}s`
      : `${title} per ${per} over the last ${points.length} ${per}s: ${total} in total`,
  });
  for (const fraction of [0, 0.5, 1]) {
    const y = PAD.top + plotH * (1 - fraction);
    svg.append(
      s("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y, y2: y, class: "grid" }),
      s("text", { x: PAD.left - 4, y: y + 4, class: "axis", "text-anchor": "end" }, String(max * fraction)),
    );
  }
  points.forEach((p, i) => {
    const barH = (p.value / max) * plotH;
    const bar = s("rect", {
      x: PAD.left + i * slot + 1,
      y: PAD.top + plotH - barH,
      width: Math.max(slot - 2, 1),
      height: Math.max(barH, p.value ? 1 : 0),
      class: "bar",
    });
    bar.append(s("title", {}, `${timeLabel(p.start, bucketSeconds)}: ${p.value}${unit ? ` ${unit}` : ""} ${title}`));
    svg.append(bar);
  });
  if (points.length) {
    const y = HEIGHT - 6;
    svg.append(
      s("text", { x: PAD.left, y, class: "axis" }, timeLabel(points[0].start, bucketSeconds)),
      s("text", { x: WIDTH - PAD.right, y, class: "axis", "text-anchor": "end" }, "now"),
    );
  }
  return svg;
}

/** Horizontal bars for a few labelled counts (pending per priority). rows: [{label, value}]. */
export function labelledBars(rows, { title }) {
  const rowH = 26;
  const labelW = 70;
  const width = 600;
  const height = rows.length * rowH + 4;
  const max = Math.max(1, ...rows.map((r) => r.value));
  const svg = s("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "chart hbars",
    role: "img",
    "aria-label": `${title}: ${rows.map((r) => `${r.label} ${r.value}`).join(", ")}`,
  });
  rows.forEach((r, i) => {
    const y = 2 + i * rowH;
    const barW = ((width - labelW - 60) * r.value) / max;
    svg.append(
      s("text", { x: 0, y: y + 17, class: "label" }, r.label),
      s("rect", { x: labelW, y: y + 4, width: Math.max(barW, r.value ? 2 : 0), height: rowH - 8, class: `bar prio-${r.label}` }),
      s("text", { x: labelW + barW + 6, y: y + 17, class: "value" }, String(r.value)),
    );
  });
  return svg;
}
