// Overview: counts per status and priority, last-hour charts, live workers, counts per type.
// Refreshed when the queue-wide change stream says jobs changed, and on a timer for the rest.

import { retryAllFailed } from "../actions.js";
import { api } from "../api.js";
import { labelledBars, minuteBars, timeBars } from "../charts.js";
import { keepFresh } from "../live.js";
import { confirmDialog, fmtAgo, h, replace, shortId, toast } from "../dom.js";

const STATES = ["waiting-children", "delayed", "pending", "processing", "completed", "failed", "cancelled"];
const PRIORITIES = ["critical", "high", "normal", "low"];
const LIST_FOR_STATE = { processing: "active" };
const HISTORY_RANGES = ["1h", "24h", "7d"];

/** The parts of GET /jobs/stats (StatsPublic) the overview draws. */
export function normalizeStats(stats) {
  return {
    byState: stats.counts,
    // Leased by a worker that prefetched them, their code not started (not in `processing`).
    reserved: stats.reserved ?? 0,
    byPriority: stats.pending_by_priority,
    byType: stats.by_type,
    oldestAge: stats.oldest_pending_age_seconds,
    paused: Boolean(stats.paused),
    pausedTypes: new Set(stats.paused_types ?? []),
  };
}

export async function renderOverview(view) {
  const statusCards = h("ul", { class: "cards", "aria-label": "Jobs per status" });
  const priority = h("div", { class: "panel-body" });
  const throughput = h("div", { class: "panel-body charts" });
  const workers = h("div", { class: "panel-body" });
  const types = h("div", { class: "panel-body" });
  const retryAll = h("button", { type: "button" }, "Retry all failed");
  const updated = h("p", { class: "muted small", "aria-live": "off" });
  const history = h("div", { class: "panel-body charts" });
  const ranges = h("div", { class: "actions", role: "group", "aria-label": "History range" },
    HISTORY_RANGES.map((range) => h("button", { type: "button", class: "secondary", "data-range": range, "aria-pressed": String(range === "24h") }, range)));
  let historyRange = "24h";
  ranges.addEventListener("click", async (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    historyRange = button.dataset.range;
    for (const other of ranges.children) other.setAttribute("aria-pressed", String(other === button));
    await drawHistory(history, historyRange);
  });
  const queueFlow = h("button", { type: "button", class: "secondary", "data-testid": "queue-flow" }, "Pause queue");
  const queueState = h("span", { class: "muted", "data-testid": "queue-state" });
  let paused = false;
  queueFlow.addEventListener("click", async () => {
    const action = paused ? "resume" : "pause";
    if (action === "pause" && !(await confirmDialog("Pause the queue? No job starts until it is resumed; running jobs go on.", "Pause queue"))) return;
    try {
      await api(`/queue/${action}`, { method: "POST" });
      toast(action === "pause" ? "Queue paused." : "Queue resumed.");
    } catch (err) {
      toast(`Cannot ${action} the queue: ${err.message}`, "error");
    }
    await refresh();
  });
  types.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-type]");
    if (!button) return;
    const action = button.dataset.action;
    try {
      await api(`/jobs/types/${encodeURIComponent(button.dataset.type)}/${action}`, { method: "POST" });
      toast(`${button.dataset.type} ${action === "pause" ? "paused" : "resumed"}.`);
    } catch (err) {
      toast(`Cannot ${action} ${button.dataset.type}: ${err.message}`, "error");
    }
    await refresh();
  });
  retryAll.addEventListener("click", async () => {
    retryAll.disabled = true;
    try {
      await retryAllFailed();
      await refresh();
    } finally {
      retryAll.disabled = false;
    }
  });
  replace(
    view,
    h("div", { class: "title-row" }, h("h1", {}, "Overview"), h("div", { class: "actions" }, queueState, queueFlow, retryAll)),
    statusCards,
    h("div", { class: "grid" },
      h("section", { class: "panel wide", "aria-labelledby": "h-throughput" }, h("h2", { id: "h-throughput" }, "Last hour"), throughput),
      h("section", { class: "panel wide", "aria-labelledby": "h-history" },
        h("div", { class: "title-row" }, h("h2", { id: "h-history" }, "History"), ranges), history),
      h("section", { class: "panel", "aria-labelledby": "h-priority" }, h("h2", { id: "h-priority" }, "Pending per priority"), priority),
      h("section", { class: "panel", "aria-labelledby": "h-types" }, h("h2", { id: "h-types" }, "Jobs per type"), types),
      h("section", { class: "panel wide", "aria-labelledby": "h-workers" }, h("h2", { id: "h-workers" }, "Live workers"), workers),
    ),
    updated,
  );

  async function refresh() {
    const [stats, workerList, perMinute] = await Promise.all([
      api("/jobs/stats"),
      api("/jobs/workers"),
      api("/ui/api/throughput").catch(() => null),
    ]);
    const norm = normalizeStats(stats);
    drawCards(statusCards, norm);
    replace(priority, labelledBars(PRIORITIES.map((p) => ({ label: p, value: norm.byPriority[p] ?? 0 })), { title: "Pending jobs per priority" }),
      norm.oldestAge ? h("p", { class: "muted small" }, `Oldest pending job waits ${Math.round(norm.oldestAge)} s.`) : null);
    drawThroughput(throughput, perMinute);
    drawTypes(types, norm.byType, norm.pausedTypes);
    paused = norm.paused;
    queueState.textContent = paused ? "Queue paused" : "Queue running";
    queueFlow.textContent = paused ? "Resume queue" : "Pause queue";
    await drawHistory(history, historyRange);
    drawWorkers(workers, workerList.items);
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  }

  // Workers' heartbeats and current jobs change without a job changing state: re-read them
  // every few seconds even while the change stream is up.
  const live = keepFresh(refresh, {
    slowMs: 4000,
    onError: (err) => { updated.textContent = `Refresh failed: ${err.message}`; },
  });
  await live.first;
  return live.stop;
}

function drawCards(container, norm) {
  const card = (name, value, href, title) => h("li", {}, h(
    "a",
    { href, class: `card state-${name}`, "aria-label": `${name}: ${value}`, title },
    h("span", { class: "count", "data-testid": `count-${name}` }, String(value)),
    h("span", { class: "label" }, name),
  ));
  replace(
    container,
    STATES.flatMap((state) => {
      const shown = card(state, norm.byState[state] ?? 0, `#/jobs/${LIST_FOR_STATE[state] ?? state}`);
      // Reserved jobs are in the active list too, beside the running ones.
      return state !== "processing" ? [shown] : [shown, card("reserved", norm.reserved, "#/jobs/active",
        "prefetched by a worker, waiting for a free slot: their code has not started")];
    }),
  );
}

function drawThroughput(container, perMinute) {
  if (!perMinute) {
    replace(container, h("p", { class: "muted" }, "Per-minute counters are not available."));
    return;
  }
  const minutes = perMinute.minutes ?? [];
  const series = (name) => minutes.map((m) => ({ minute: m.minute, value: m[name] ?? 0 }));
  const sum = (name) => minutes.reduce((total, m) => total + (m[name] ?? 0), 0);
  replace(
    container,
    h("figure", {}, h("figcaption", {}, `Completed per minute (${sum("completed")} in the last hour)`), minuteBars(series("completed"), { title: "completed", kind: "ok" })),
    h("figure", {}, h("figcaption", {}, `Failed per minute (${sum("failed")} in the last hour, ${sum("retried")} attempts retried)`), minuteBars(series("failed"), { title: "failed", kind: "bad" })),
  );
}

/** Throughput, failures and wait percentiles from GET /jobs/stats/history. */
async function drawHistory(container, range) {
  let body;
  try {
    body = await api(`/jobs/stats/history?range=${range}`);
  } catch (err) {
    replace(container, h("p", { class: "muted" }, `History is not available: ${err.message}`));
    return;
  }
  const bucketSeconds = body.bucket_seconds;
  const series = (name) => body.points.map((p) => ({ start: p.start, value: p[name] ?? 0 }));
  const sum = (name) => body.points.reduce((total, p) => total + p[name], 0);
  replace(
    container,
    h("figure", {}, h("figcaption", {}, `Completed (${sum("completed")} in ${range})`), timeBars(series("completed"), { title: "completed", kind: "ok", bucketSeconds })),
    h("figure", {}, h("figcaption", {}, `Failed (${sum("failed")} in ${range})`), timeBars(series("failed"), { title: "failed", kind: "bad", bucketSeconds })),
    h("figure", {}, h("figcaption", {}, "Wait p50 (ms)"), timeBars(series("wait_p50_ms"), { title: "wait p50", kind: "info", bucketSeconds, unit: "ms" })),
    h("figure", {}, h("figcaption", {}, "Wait p95 (ms)"), timeBars(series("wait_p95_ms"), { title: "wait p95", kind: "warn", bucketSeconds, unit: "ms" })),
  );
}

function drawTypes(container, byType, pausedTypes) {
  const names = [...new Set([...Object.keys(byType), ...pausedTypes])].sort();
  if (!names.length) {
    replace(container, h("p", { class: "muted" }, "No jobs yet."));
    return;
  }
  const columns = ["delayed", "pending", "processing", "completed", "failed", "cancelled"];
  replace(
    container,
    h("table", {},
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Type"), columns.map((c) => h("th", { scope: "col", class: "num" }, c)), h("th", { scope: "col" }, "Starts"))),
      h("tbody", {}, names.map((name) =>
        h("tr", {},
          h("th", { scope: "row" }, h("a", { href: `#/types/${encodeURIComponent(name)}` }, name)),
          columns.map((c) => h("td", { class: "num" }, String(byType[name]?.[c] ?? 0))),
          h("td", {}, pausedTypes.has(name)
            ? h("button", { type: "button", class: "secondary", "data-type": name, "data-action": "resume", "aria-label": `Resume ${name}` }, "Paused: resume")
            : h("button", { type: "button", class: "secondary", "data-type": name, "data-action": "pause", "aria-label": `Pause ${name}` }, "Pause")),
        ))),
    ),
  );
}

function drawWorkers(container, workers) {
  if (!Array.isArray(workers) || !workers.length) {
    replace(container, h("p", { class: "muted" }, "No live workers. Jobs wait in pending until one starts."));
    return;
  }
  replace(
    container,
    h("table", {},
      h("thead", {}, h("tr", {}, ["Worker", "Host / pid", "Up since", "Heartbeat", "Processed", "Failed", "Stalls", "Current jobs"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, workers.map((w) =>
        h("tr", {},
          h("td", { title: w.id }, shortId(w.id)),
          h("td", {}, `${w.host} / ${w.pid}`),
          h("td", {}, fmtAgo(w.started_at)),
          h("td", {}, fmtAgo(w.last_heartbeat)),
          h("td", { class: "num" }, String(w.processed ?? 0)),
          h("td", { class: "num" }, String(w.failed ?? 0)),
          h("td", { class: "num", "data-testid": "worker-stalls" }, w.stalled
            ? h("span", { class: "badge state-failed", title: "idle with due jobs pending; its dispatch loop was restarted" }, `stalled (${w.stalls})`)
            : String(w.stalls ?? 0)),
          h("td", {}, (w.current_jobs ?? []).length
            ? (w.current_jobs ?? []).map((id) => h("a", { href: `#/job/${encodeURIComponent(id)}`, class: "job-chip", title: id }, shortId(id)))
            : h("span", { class: "muted" }, `idle (0 of ${w.concurrency ?? "?"})`)),
        ))),
    ),
  );
}
