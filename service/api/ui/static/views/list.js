// The job list: a search over every job (GET /jobs) filtered by state, type, priority,
// creation time and text, the filter kept in the URL hash (#/jobs/<state>?type=&q=...) so a
// reload or a shared link shows the same jobs. Pages follow the API's cursors (a stack of them
// for "Previous"), never offsets, so paging costs the same at job 100,000 as at job 1. Bulk
// cancel, retry and delete act on the selected rows or on everything the filter matches, after
// a dry run has counted them and the operator has confirmed that count.

import { retryAllFailed } from "../actions.js";
import { api } from "../api.js";
import { confirmDialog, fmtTime, h, jobBadge, jobState, replace, shortId } from "../dom.js";
import { keepFresh } from "../live.js";

// "all" is the unfiltered list; "active" is the older name of the processing state.
export const LIST_STATUSES = ["all", "waiting-children", "delayed", "pending", "active", "completed", "failed", "cancelled"];
const STATES = ["waiting-children", "delayed", "pending", "processing", "completed", "failed", "cancelled"];
const PRIORITIES = ["low", "normal", "high", "critical"];
const PAGE_SIZES = [10, 25, 50, 100];
const DEFAULT_LIMIT = 25;
const MAX_LIMIT = 500; // GET /jobs's own bound
// A selective filter can leave a page short while the API still has a cursor: follow it this
// many times to fill the page, so one refresh reads a bounded stretch of the queue.
const MAX_HOPS = 4;
// The API's bounds (service/api/routes/search.py): ids per request, jobs per filtered action.
const MAX_BULK_IDS = 1000;
const MAX_BULK_MATCHES = 10_000;
const VERBS = {
  cancel: { label: "Cancel", done: "cancelled" },
  retry: { label: "Retry", done: "queued again" },
  delete: { label: "Delete", done: "deleted" },
};
const COLUMNS = ["Select", "Job", "Type", "State", "Priority", "Created", "Runs at", "Error", "Wait", "Run", "Attempts"];

// The id of the control that changed the filter: the view is drawn anew for the new hash, and
// the keyboard user's focus goes back to the same control.
let refocusId = null;

export function renderStatusList(view, { parts, params }) {
  const segment = parts[1];
  const state = segment === "all" ? null : segment === "active" ? "processing" : segment;
  return renderSearch(view, readFilter(params, { state }));
}

export function renderTypeList(view, { parts, params }) {
  return renderSearch(view, readFilter(params, { type: parts[1], state: params.get("status") || null }));
}

/** The filter in a hash's query, over what the path says. */
function readFilter(params, base) {
  const limit = Number.parseInt(params.get("limit") ?? "", 10);
  return {
    state: params.get("state") || base.state || null,
    type: params.get("type") || base.type || null,
    priority: params.get("priority") || null,
    since: params.get("since") || null,
    until: params.get("until") || null,
    q: params.get("q") || null,
    sort: params.get("sort") === "created" ? "created" : "-created",
    limit: limit >= 1 && limit <= MAX_LIMIT ? limit : DEFAULT_LIMIT,
  };
}

/** The hash that shows `filter`: the state in the path (so the nav marks it), the rest in the query. */
function hashFor(filter) {
  const segment = !filter.state ? "all" : filter.state === "processing" ? "active" : filter.state;
  const query = new URLSearchParams(apiFilter(filter));
  query.delete("state");
  if (filter.sort === "created") query.set("sort", "created");
  if (filter.limit !== DEFAULT_LIMIT) query.set("limit", String(filter.limit));
  const text = query.toString();
  return `#/jobs/${segment}${text ? `?${text}` : ""}`;
}

/** The filter as GET /jobs's query parameters and BulkRequest's `filter` (set fields only). */
function apiFilter(filter) {
  const out = {};
  for (const name of ["state", "type", "priority", "since", "until", "q"]) {
    if (filter[name]) out[name] = filter[name];
  }
  return out;
}

function describe(filter) {
  const parts = Object.entries(apiFilter(filter)).map(([name, value]) => `${name} ${value}`);
  return parts.length ? parts.join(", ") : "no filter: every job";
}

async function renderSearch(view, filter) {
  const heading = `${filter.state ? capitalise(filter.state) : "All"} jobs${filter.type ? ` of type ${filter.type}` : ""}`;
  // What the parts of the view share: the selection (kept across pages), the ids on this page,
  // and the cursors of the pages visited, so "Previous page" works without the API paging back.
  const list = { filter, selected: new Set(), pageIds: [], cursors: [null], refresh: () => {} };
  const body = h("div", { class: "list-body" });
  const result = h("section", { class: "bulk-result", "aria-label": "Bulk action result", "aria-live": "polite" });
  const bulk = bulkBar(list, body, (verb, scope, button) => runBulk(list, { verb, scope, button, bulk, result }));
  const pager = pagerBar(list);
  replace(
    view,
    h("div", { class: "title-row" }, h("h1", {}, heading), h("div", { class: "actions" }, titleActions(filter))),
    filterForm(list),
    bulk.element,
    result,
    body,
    pager.element,
  );
  if (refocusId) document.getElementById(refocusId)?.focus();
  refocusId = null;

  let generation = 0;
  async function load() {
    const token = ++generation;
    const at = list.cursors.length;
    const page = await fetchPage(filter, list.cursors[at - 1]);
    if (token !== generation || at !== list.cursors.length) return; // paged on meanwhile
    list.pageIds = page.items.map((job) => job.id);
    drawTable(body, page, list.selected, filter.sort);
    pager.draw(at, page.next);
    bulk.draw();
  }
  const showError = (err) => replace(body, h("p", { class: "error", role: "alert" }, `Cannot load jobs: ${err.message}`));
  const live = keepFresh(load, { fastMs: 3000, slowMs: 5000, onError: showError });
  list.refresh = live.refresh;
  await live.first;
  return live.stop;
}

/** The filter controls; a changed select applies at once, text and times on Enter or Apply. */
function filterForm(list) {
  const current = list.filter;
  const field = (id, label, control, size = "") =>
    h("div", { class: `field ${size}` }, h("label", { for: id }, label), control);
  const choose = (id, options, value) =>
    h("select", { id, name: id.slice(5) }, options.map(([v, text]) => h("option", { value: v, selected: v === (value ?? "") }, text)));
  const moment = (id, value) => h("input", { id, name: id.slice(5), type: "datetime-local", step: 1, value: toLocalInput(value) });
  const typeSelect = choose("list-type", [["", "any type"], ...(current.type ? [[current.type, current.type]] : [])], current.type);
  const sizes = PAGE_SIZES.includes(current.limit) ? PAGE_SIZES : [...PAGE_SIZES, current.limit].sort((a, b) => a - b);
  const form = h(
    "form",
    { class: "job-filters", role: "search", "aria-label": "Filter jobs" },
    field("list-q", "Search", h("input", {
      id: "list-q", name: "q", type: "search", value: current.q ?? "", autocomplete: "off",
      placeholder: "job id, idempotency key or text", maxlength: 200,
    }), "wide"),
    field("list-state", "State", choose("list-state", [["", "any state"], ...STATES.map((s) => [s, s])], current.state)),
    field("list-type", "Type", typeSelect),
    field("list-priority", "Priority", choose("list-priority", [["", "any priority"], ...PRIORITIES.map((p) => [p, p])], current.priority)),
    field("list-since", "Created from", moment("list-since", current.since), "time"),
    field("list-until", "Created until", moment("list-until", current.until), "time"),
    field("list-sort", "Sort", choose("list-sort", [["-created", "Newest first"], ["created", "Oldest first"]], current.sort)),
    field("list-limit", "Per page", choose("list-limit", sizes.map((n) => [String(n), String(n)]), String(current.limit))),
    h("div", { class: "actions" },
      h("button", { type: "submit" }, "Apply"),
      h("a", { href: "#/jobs/all", class: "button secondary" }, "Clear filters")),
  );
  const apply = () => {
    const hash = hashFor(readForm(form));
    if (location.hash === hash) {
      list.cursors.splice(1); // the same filter again: back to its first page
      list.refresh();
      return;
    }
    refocusId = document.activeElement?.id || null;
    location.hash = hash;
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); apply(); });
  form.addEventListener("change", (event) => { if (event.target.tagName === "SELECT") apply(); });
  fillTypes(typeSelect, current.type);
  return form;
}

/** "Select all on this page", the selection's count, and the six bulk buttons. */
function bulkBar(list, body, onAct) {
  const { selected } = list;
  const pageBox = h("input", { type: "checkbox", id: "list-select-page" });
  const count = h("span", { class: "muted", "data-testid": "selected-count" });
  const clear = h("button", { type: "button", class: "secondary" }, "Clear selection");
  const buttons = [];
  const group = (label, scope) => h(
    "div",
    { class: "actions", role: "group", "aria-label": label },
    Object.entries(VERBS).map(([verb, { label: name }]) => {
      const text = scope === "ids" ? `${name} selected` : `${name} all matching`;
      const button = h("button", { type: "button", class: verb === "delete" ? "danger" : "secondary", dataset: { scope } }, text);
      button.addEventListener("click", () => onAct(verb, scope, button));
      buttons.push(button);
      return button;
    }),
  );
  const draw = () => {
    const onPage = list.pageIds.filter((id) => selected.has(id)).length;
    pageBox.checked = list.pageIds.length > 0 && onPage === list.pageIds.length;
    pageBox.indeterminate = onPage > 0 && onPage < list.pageIds.length;
    pageBox.disabled = list.pageIds.length === 0;
    count.textContent = `${selected.size.toLocaleString()} selected`;
    clear.disabled = selected.size === 0;
    for (const button of buttons) {
      if (button.dataset.scope === "ids") button.disabled = selected.size === 0;
    }
  };
  const syncChecks = () => {
    for (const box of body.querySelectorAll("input[data-job-id]")) box.checked = selected.has(box.dataset.jobId);
    draw();
  };
  pageBox.addEventListener("change", () => {
    for (const id of list.pageIds) {
      if (pageBox.checked) selected.add(id);
      else selected.delete(id);
    }
    syncChecks();
  });
  clear.addEventListener("click", () => { selected.clear(); syncChecks(); });
  body.addEventListener("change", (event) => {
    const id = event.target.dataset?.jobId;
    if (!id) return;
    if (event.target.checked) selected.add(id);
    else selected.delete(id);
    draw();
  });
  const element = h(
    "section",
    { class: "bulk", "aria-label": "Bulk actions" },
    h("div", { class: "check" }, pageBox, h("label", { for: "list-select-page" }, "Select all on this page")),
    count,
    clear,
    group("Act on the selected jobs", "ids"),
    group("Act on every job the filter matches", "filter"),
  );
  const busy = (on) => {
    for (const button of buttons) button.disabled = on;
    if (!on) draw();
  };
  return { element, draw, busy };
}

/** Count with a dry run, confirm that count, act, and show what was done and skipped. */
async function runBulk(list, { verb, scope, button, bulk, result }) {
  const show = (...content) => showResult(result, content);
  if (scope === "ids" && list.selected.size > MAX_BULK_IDS) {
    show(h("p", { class: "error" }, `Select at most ${MAX_BULK_IDS.toLocaleString()} jobs, or act on the filter.`));
    return;
  }
  const target = scope === "ids" ? { ids: [...list.selected] } : { filter: apiFilter(list.filter) };
  const path = `/jobs/bulk/${verb}`;
  bulk.busy(true);
  try {
    const preview = await api(path, { method: "POST", body: { ...target, dry_run: true } });
    if (!preview.matched) {
      show(h("p", {}, `No jobs match (${describe(list.filter)}).`));
      return;
    }
    const { label } = VERBS[verb];
    const jobs = `${preview.matched.toLocaleString()} ${preview.matched === 1 ? "job" : "jobs"}`;
    const capped = scope === "filter" && preview.matched >= MAX_BULK_MATCHES
      ? ` At most ${MAX_BULK_MATCHES.toLocaleString()} per action: repeat it for the rest.` : "";
    if (!(await confirmDialog(`${label} ${jobs}?${capped}`, `${label} ${jobs}`))) return;
    const outcome = await api(path, { method: "POST", body: target });
    if (scope === "ids") list.selected.clear();
    show(resultText(verb, outcome));
  } catch (err) {
    show(h("p", { class: "error" }, `Cannot ${verb}: ${err.message}`));
  } finally {
    bulk.busy(false);
    // The button was disabled while the action ran, which dropped the keyboard focus.
    if (document.activeElement === document.body && !button.disabled) button.focus();
    list.refresh();
  }
}

function showResult(result, content) {
  const dismiss = h("button", { type: "button", class: "secondary" }, "Dismiss");
  dismiss.addEventListener("click", () => replace(result));
  replace(result, content, dismiss);
}

/** Previous / Page N / Next over the cursor stack. */
function pagerBar(list) {
  const prev = h("button", { type: "button", class: "secondary", disabled: true }, "Previous page");
  const next = h("button", { type: "button", class: "secondary", disabled: true }, "Next page");
  const where = h("span", { class: "muted", "data-testid": "page-number" }, "Page 1");
  let nextCursor = null;
  prev.addEventListener("click", () => {
    if (list.cursors.length > 1) list.cursors.pop();
    list.refresh();
  });
  next.addEventListener("click", () => {
    if (nextCursor) list.cursors.push(nextCursor);
    list.refresh();
  });
  const draw = (page, cursor) => {
    nextCursor = cursor;
    prev.disabled = page === 1;
    next.disabled = !cursor;
    where.textContent = `Page ${page}`;
    // On the last page "Next" is disabled, which drops the keyboard focus: hand it to "Previous".
    if (document.activeElement === document.body && next.disabled && !prev.disabled) prev.focus();
  };
  return { element: h("nav", { class: "pager", "aria-label": "Pagination" }, prev, where, next), draw };
}

function titleActions(filter) {
  const out = [];
  if (filter.state === "failed") out.push(retryAllButton());
  if (filter.type) {
    out.push(h("a", { href: `#/enqueue?type=${encodeURIComponent(filter.type)}`, class: "button" }, `Enqueue ${filter.type}`));
  }
  return out;
}

/** One page from `cursor`, following the API's cursor while a filter leaves the page short. */
async function fetchPage(filter, cursor) {
  const items = [];
  let next = cursor;
  let hops = 0;
  do {
    const query = new URLSearchParams({ ...apiFilter(filter), sort: filter.sort, limit: String(filter.limit - items.length) });
    if (next) query.set("cursor", next);
    const page = await api(`/jobs?${query}`);
    items.push(...page.items);
    next = page.next_cursor;
    hops += 1;
  } while (next && items.length < filter.limit && hops < MAX_HOPS);
  return { items, next };
}

function readForm(form) {
  const value = (name) => form.elements[name].value.trim() || null;
  return {
    state: value("state"),
    type: value("type"),
    priority: value("priority"),
    since: fromLocalInput(value("since")),
    until: fromLocalInput(value("until")),
    q: value("q"),
    sort: value("sort") === "created" ? "created" : "-created",
    limit: Number.parseInt(value("limit"), 10) || DEFAULT_LIMIT,
  };
}

async function fillTypes(select, current) {
  let names = [];
  try {
    names = (await api("/jobs/types")).items.map((t) => t.name);
  } catch {
    return; // the list works without the choices; the current type stays selectable
  }
  for (const name of names) {
    if (name !== current) select.append(h("option", { value: name }, name));
  }
}

function drawTable(container, page, selected, sort) {
  if (!page.items.length) {
    replace(container, h("p", { class: "muted" }, page.next
      ? "No matching jobs in this stretch of the queue; Next page searches on."
      : "No jobs match this filter."));
    return;
  }
  const focused = container.contains(document.activeElement) ? document.activeElement.id : null;
  replace(
    container,
    h("table", { class: "jobs job-list" },
      h("thead", {}, h("tr", {}, COLUMNS.map((c, i) => h("th", {
        scope: "col",
        "aria-sort": c === "Created" ? (sort === "created" ? "ascending" : "descending") : null,
      }, i === 0 ? h("span", { class: "visually-hidden" }, c) : c)))),
      h("tbody", {}, page.items.map((job) => row(job, selected.has(job.id))))),
  );
  if (focused) document.getElementById(focused)?.focus();
}

function row(job, checked) {
  const cell = (label, content, extra = {}) => h("td", { "data-label": label, ...extra }, content);
  const empty = (value) => (value === null || value === undefined ? "empty" : "");
  const state = jobState(job);
  return h("tr", { "data-id": job.id },
    cell("Select", h("input", {
      type: "checkbox", id: `select-${job.id}`, checked, "aria-label": `Select job ${job.id}`, dataset: { jobId: job.id },
    }), { class: "select" }),
    cell("Job", h("a", { href: `#/job/${encodeURIComponent(job.id)}`, id: `link-${job.id}`, title: job.id, class: "mono" }, shortId(job.id))),
    cell("Type", h("a", { href: `#/types/${encodeURIComponent(job.type)}` }, job.type)),
    cell("State", jobBadge(job)),
    cell("Priority", priorityLabel(job.priority)),
    cell("Created", fmtTime(job.created_at)),
    cell("Runs at", fmtTime(job.runs_at), { class: empty(job.runs_at) }),
    cell("Error", job.error ?? "—", { class: job.error ? "error-text" : "empty", title: job.error ?? null }),
    // A delayed job has not begun to wait (the API counts from when it is due): no "0 ms".
    cell("Wait", state === "delayed" ? "—" : fmtDuration(job.wait_ms), { class: `num ${state === "delayed" ? "empty" : empty(job.wait_ms)}` }),
    cell("Run", fmtDuration(job.run_ms), { class: `num ${empty(job.run_ms)}` }),
    cell("Attempts", `${job.attempts_made ?? 0}/${job.max_attempts ?? "?"}`, { class: "num" }),
  );
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

function resultText(verb, outcome) {
  const { done } = VERBS[verb];
  const skippedCount = outcome.matched - outcome.changed;
  const lines = [h("p", {}, `${outcome.changed.toLocaleString()} of ${outcome.matched.toLocaleString()} job(s) ${done}; ${skippedCount.toLocaleString()} skipped.`)];
  if (outcome.skipped.length) {
    lines.push(h("ul", { "aria-label": "Skipped jobs" }, outcome.skipped.map((s) =>
      h("li", {}, h("a", { href: `#/job/${encodeURIComponent(s.id)}`, class: "mono" }, s.id), `: ${s.reason}`))));
    if (skippedCount > outcome.skipped.length) {
      lines.push(h("p", { class: "muted" }, `…and ${(skippedCount - outcome.skipped.length).toLocaleString()} more skipped.`));
    }
  }
  return lines;
}

/** "850 ms", "4.2 s", "3 min 5 s", "2 h 10 min", "3 d 4 h"; "—" for none. */
export function fmtDuration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${ms} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const [m, s] = [Math.floor(seconds / 60), Math.floor(seconds % 60)];
  if (m < 60) return `${m} min ${s} s`;
  const [hours, min] = [Math.floor(m / 60), m % 60];
  if (hours < 24) return `${hours} h ${min} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** An ISO time as a datetime-local input's value (local time); "" for none. */
function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(/^\d+$/.test(iso) ? Number(iso) : iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A datetime-local value (local time) as ISO-8601 UTC, which the API reads with its zone. */
function fromLocalInput(value) {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d.toISOString().replace(".000Z", "Z"); // whole seconds
}

function capitalise(text) {
  return text[0].toUpperCase() + text.slice(1);
}

/** Priority as a name whether the API sends 10 or "normal". */
export function priorityLabel(value) {
  const names = { 5: "low", 10: "normal", 15: "high", 20: "critical" };
  return names[value] ?? String(value);
}
