// Overview: counts per status and priority, last-hour charts, live workers, counts per type.
// Refreshed when the queue-wide change stream says jobs changed, and on a timer for the rest.

import { retryAllFailed } from "../actions.js";
import { api } from "../api.js";
import { labelledBars, minuteBars } from "../charts.js";
import { keepFresh } from "../live.js";
import { fmtAgo, h, replace, shortId } from "../dom.js";

const STATES = ["delayed", "pending", "processing", "completed", "failed", "cancelled"];
const PRIORITIES = ["critical", "high", "normal", "low"];
const LIST_FOR_STATE = { processing: "active" };

/** The parts of GET /jobs/stats (StatsPublic) the overview draws. */
export function normalizeStats(stats) {
  return {
    byState: stats.counts,
    byPriority: stats.pending_by_priority,
    byType: stats.by_type,
    oldestAge: stats.oldest_pending_age_seconds,
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
    h("div", { class: "title-row" }, h("h1", {}, "Overview"), h("div", { class: "actions" }, retryAll)),
    statusCards,
    h("div", { class: "grid" },
      h("section", { class: "panel wide", "aria-labelledby": "h-throughput" }, h("h2", { id: "h-throughput" }, "Last hour"), throughput),
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
    drawTypes(types, norm.byType);
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
  replace(
    container,
    STATES.map((state) => {
      const value = norm.byState[state] ?? 0;
      return h("li", {}, h(
        "a",
        { href: `#/jobs/${LIST_FOR_STATE[state] ?? state}`, class: `card state-${state}`, "aria-label": `${state}: ${value}` },
        h("span", { class: "count", "data-testid": `count-${state}` }, String(value)),
        h("span", { class: "label" }, state),
      ));
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

function drawTypes(container, byType) {
  const names = Object.keys(byType).sort();
  if (!names.length) {
    replace(container, h("p", { class: "muted" }, "No jobs yet."));
    return;
  }
  const columns = ["delayed", "pending", "processing", "completed", "failed", "cancelled"];
  replace(
    container,
    h("table", {},
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Type"), columns.map((c) => h("th", { scope: "col", class: "num" }, c)))),
      h("tbody", {}, names.map((name) =>
        h("tr", {},
          h("th", { scope: "row" }, h("a", { href: `#/types/${encodeURIComponent(name)}` }, name)),
          columns.map((c) => h("td", { class: "num" }, String(byType[name]?.[c] ?? 0))),
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
