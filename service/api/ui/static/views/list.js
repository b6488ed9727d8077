// Job lists: per status (/jobs/{status}) and per type (/jobs/{type}/jobs?status=), paginated
// with the API's cursors. The current page refreshes when jobs change.

import { retryAllFailed } from "../actions.js";
import { api } from "../api.js";
import { badge, fmtTime, h, jobState, replace, shortId } from "../dom.js";
import { keepFresh } from "../live.js";

export const LIST_STATUSES = ["delayed", "pending", "active", "completed", "failed", "cancelled"];
const TYPE_FILTERS = ["", "delayed", "pending", "processing", "completed", "failed", "cancelled"];
const PAGE_SIZE = 25;

export function renderStatusList(view, { parts, params }) {
  const status = parts[1];
  const extra = status === "failed" ? retryAllButton() : null;
  return renderList(view, {
    heading: `${status === "active" ? "Processing" : status[0].toUpperCase() + status.slice(1)} jobs`,
    path: `/jobs/${status}`,
    params,
    filters: null,
    extra,
  });
}

export function renderTypeList(view, { parts, params }) {
  const type = parts[1];
  const status = params.get("status") ?? "";
  const filter = h("select", { id: "type-status-filter" },
    TYPE_FILTERS.map((s) => h("option", { value: s, selected: s === status }, s || "any status")));
  filter.addEventListener("change", () => {
    location.hash = `#/types/${encodeURIComponent(type)}${filter.value ? `?status=${filter.value}` : ""}`;
  });
  const enqueue = h("a", { href: `#/enqueue?type=${encodeURIComponent(type)}`, class: "button" }, `Enqueue ${type}`);
  return renderList(view, {
    heading: `Jobs of type ${type}`,
    path: `/jobs/${encodeURIComponent(type)}/jobs`,
    params,
    query: status ? { status } : {},
    filters: h("div", { class: "filters" }, h("label", { for: "type-status-filter" }, "Status"), filter, enqueue),
    extra: null,
  });
}

function retryAllButton() {
  const button = h("button", { type: "button" }, "Retry all failed");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await retryAllFailed();
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

async function renderList(view, { heading, path, params, query = {}, filters, extra }) {
  // Cursors already visited, so "Previous page" works without the API paging backwards.
  const cursors = [params.get("cursor") || null];
  const body = h("div", { class: "list-body" });
  const pager = h("nav", { class: "pager", "aria-label": "Pagination" });
  replace(view, h("div", { class: "title-row" }, h("h1", {}, heading), h("div", { class: "actions" }, extra)), filters, body, pager);

  async function load() {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE), ...query });
    const cursor = cursors[cursors.length - 1];
    if (cursor) q.set("cursor", cursor);
    const page = await api(`${path}?${q}`);
    drawTable(body, page.items);
    drawPager(page.next_cursor);
  }

  function drawPager(next) {
    const prev = h("button", { type: "button", class: "secondary", disabled: cursors.length === 1 }, "Previous page");
    const nextButton = h("button", { type: "button", class: "secondary", disabled: !next }, "Next page");
    prev.addEventListener("click", () => { cursors.pop(); live.refresh(); });
    nextButton.addEventListener("click", () => { cursors.push(next); live.refresh(); });
    replace(pager, prev, h("span", { class: "muted" }, `Page ${cursors.length}`), nextButton);
  }

  function showError(err) {
    replace(body, h("p", { class: "error", role: "alert" }, `Cannot load jobs: ${err.message}`));
  }

  const live = keepFresh(load, { fastMs: 3000, slowMs: 5000, onError: showError });
  await live.first;
  return live.stop;
}

function drawTable(container, jobs) {
  if (!jobs.length) {
    replace(container, h("p", { class: "muted" }, "No jobs here."));
    return;
  }
  replace(
    container,
    h("table", { class: "jobs" },
      h("thead", {}, h("tr", {}, ["Job", "Type", "Status", "Priority", "Attempts", "Progress", "Created", "Finished"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, jobs.map((job) =>
        h("tr", {},
          h("td", {}, h("a", { href: `#/job/${encodeURIComponent(job.id)}`, title: job.id, class: "mono" }, shortId(job.id))),
          h("td", {}, h("a", { href: `#/types/${encodeURIComponent(job.type)}` }, job.type)),
          h("td", {}, badge(jobState(job))),
          h("td", {}, priorityLabel(job.priority)),
          h("td", { class: "num" }, `${job.attempts_made ?? 0}/${job.max_attempts ?? "?"}`),
          h("td", {}, h("progress", { max: 100, value: job.progress ?? 0, "aria-label": `Progress of ${job.id}` })),
          h("td", {}, fmtTime(job.created_at)),
          h("td", {}, fmtTime(job.finished_at)),
        ))),
    ),
  );
}

/** Priority as a name whether the API sends 10 or "normal". */
export function priorityLabel(value) {
  const names = { 5: "low", 10: "normal", 15: "high", 20: "critical" };
  return names[value] ?? String(value);
}
