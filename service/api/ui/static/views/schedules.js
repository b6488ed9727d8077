// Schedules: each schedule's job type, cadence, next run, newest run and whether it runs, with
// pause/resume, trigger (one run now) and delete. Runs are jobs, so the page re-reads when jobs
// change; and on a timer, because a next run time moves on without any job changing.

import { api } from "../api.js";
import { badge, confirmDialog, fmtTime, h, replace, shortId, toast } from "../dom.js";
import { keepFresh } from "../live.js";

const COLUMNS = ["Schedule", "Type", "Cadence", "Next run", "Runs", "Last run", "State", "Actions"];
// Whole units shown after a period in seconds, largest first: "every 86400 s (1 d)".
const UNITS = [["d", 86400], ["h", 3600], ["min", 60]];

export async function renderSchedules(view) {
  const body = h("div", { class: "list-body" });
  const updated = h("p", { class: "muted small", "aria-live": "off" });
  replace(view, h("div", { class: "title-row" }, h("h1", {}, "Schedules")), body, updated);
  let drawn = null;

  async function refresh() {
    const schedules = await api("/ui/api/schedules");
    // Redraw only on a change: a periodic refresh must not take the focus from a keyboard
    // user's button or move the page under them.
    const snapshot = JSON.stringify(schedules);
    if (snapshot !== drawn) {
      drawn = snapshot;
      keepingFocus(body, () => drawSchedules(body, schedules));
    }
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  }

  // Schedules with a request in flight: another click on their buttons is ignored meanwhile.
  // Not `disabled`, which would take the focus off the button a keyboard user just pressed.
  const busy = new Set();
  body.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    const id = button?.dataset.id;
    if (!button || busy.has(id)) return;
    busy.add(id);
    try {
      await ACTIONS[button.dataset.action](id);
    } finally {
      busy.delete(id);
    }
    await live.refresh();
  });

  const live = keepFresh(refresh, {
    fastMs: 3000,
    slowMs: 5000,
    onError: (err) => { updated.textContent = `Refresh failed: ${err.message}`; },
  });
  await live.first;
  return live.stop;
}

const ACTIONS = {
  pause: (id) => post(id, "pause", `Schedule ${id} paused.`),
  resume: (id) => post(id, "resume", `Schedule ${id} resumed.`),
  trigger: async (id) => {
    const run = await post(id, "trigger", null);
    if (run) toast(`Schedule ${id} triggered: job ${run.job_id}.`);
  },
  delete: async (id) => {
    if (!(await confirmDialog(`Delete schedule ${id}? Jobs it already enqueued stay.`, "Delete schedule"))) return;
    try {
      await api(schedulePath(id), { method: "DELETE" });
      toast(`Schedule ${id} deleted.`);
    } catch (err) {
      toast(`Cannot delete ${id}: ${err.message}`, "error");
    }
  },
};

async function post(id, action, done) {
  try {
    const reply = await api(`${schedulePath(id)}/${action}`, { method: "POST" });
    if (done) toast(done);
    return reply;
  } catch (err) {
    toast(`Cannot ${action} ${id}: ${err.message}`, "error");
    return null;
  }
}

function schedulePath(id) {
  return `/schedules/${encodeURIComponent(id)}`;
}

/** Redraw `container`, then give the focus back to the same control if it had it. */
function keepingFocus(container, draw) {
  const focused = container.contains(document.activeElement) ? document.activeElement.dataset.focusKey : null;
  draw();
  if (!focused) return;
  const again = [...container.querySelectorAll("[data-focus-key]")].find((el) => el.dataset.focusKey === focused);
  // Its row is gone (deleted): the view itself takes the focus, so Tab goes on from the page.
  (again ?? document.getElementById("view"))?.focus();
}

function drawSchedules(container, schedules) {
  if (!schedules.length) {
    replace(container, h("div", { class: "panel empty", "data-testid": "schedules-empty" },
      h("p", {}, "No schedules yet."),
      h("p", { class: "muted" }, "Create one with PUT /schedules/{id}: a job type, its data, and a cron expression or every_seconds (docs/queue.md, “Schedules”).")));
    return;
  }
  replace(
    container,
    h("table", { class: "jobs schedules" },
      h("thead", {}, h("tr", {}, COLUMNS.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, schedules.map(scheduleRow)),
    ),
  );
}

function scheduleRow(schedule) {
  const { id, spec } = schedule;
  const state = scheduleState(schedule);
  // One value element per cell: on phones a cell is a flex line of its label and its value.
  const cell = (label, ...content) => h("td", { "data-label": label }, h("span", {}, content));
  return h("tr", { "data-schedule": id },
    h("th", { scope: "row", class: "mono", "data-label": "Schedule" }, h("span", {}, id)),
    cell("Type", h("a", { href: `#/types/${encodeURIComponent(spec.type)}` }, spec.type)),
    cell("Cadence", cadence(spec)),
    cell("Next run", nextRun(schedule, state)),
    h("td", { class: "num", "data-label": "Runs" }, h("span", {}, spec.limit ? `${schedule.runs} of ${spec.limit}` : String(schedule.runs))),
    cell("Last run", lastRun(id, schedule.last_run)),
    cell("State", h("span", { class: `badge schedule-${state}`, "data-testid": "schedule-state" }, state)),
    h("td", { "data-label": "Actions" }, h("div", { class: "actions" }, actionButtons(id, state))),
  );
}

/** "running", "paused", or "ended" (no tick left: past end_at or limit reached). */
function scheduleState(schedule) {
  if (schedule.paused) return "paused";
  return schedule.next_run_at ? "running" : "ended";
}

function cadence(spec) {
  if (spec.cron) {
    return [h("code", { "data-testid": "schedule-cron" }, spec.cron), " ", h("span", { class: "muted" }, spec.timezone)];
  }
  const seconds = spec.every_seconds;
  const [unit, size] = UNITS.find(([, size]) => seconds >= size && seconds % size === 0) ?? [];
  return `every ${seconds} s${unit ? ` (${seconds / size} ${unit})` : ""}`;
}

function nextRun(schedule, state) {
  if (!schedule.next_run_at) return h("span", { class: "muted" }, state === "paused" ? "— (paused)" : "— (ended)");
  return h("time", { datetime: schedule.next_run_at, "data-testid": "schedule-next" }, fmtTime(schedule.next_run_at));
}

function lastRun(scheduleId, run) {
  if (!run) return h("span", { class: "muted" }, "never");
  // A run's id is "<schedule id>:<tick ms or now-hex>": the row already names the schedule, and
  // cutting the whole id short would leave only that. The rest is short (16 characters at most).
  const prefix = `${scheduleId}:`;
  const label = run.job_id.startsWith(prefix) ? run.job_id.slice(prefix.length) : shortId(run.job_id);
  // State null: retention removed the job, so its page would only say "not found".
  if (!run.state) return [h("span", { class: "mono muted", title: run.job_id }, label), " ", badge("removed")];
  return [
    h("a", { href: `#/job/${encodeURIComponent(run.job_id)}`, class: "mono", title: run.job_id, "data-testid": "schedule-last-run" }, label),
    " ",
    badge(run.state),
  ];
}

function actionButtons(id, state) {
  const button = (action, label, cls) => h("button", {
    type: "button", class: cls, "data-action": action, "data-id": id,
    "data-focus-key": `${id}\n${action === "resume" ? "pause" : action}`, // the toggle keeps focus as it flips
    "aria-label": `${label} ${id}`,
  }, label);
  return [
    state === "paused" ? button("resume", "Resume", "secondary") : button("pause", "Pause", "secondary"),
    button("trigger", "Trigger", "secondary"),
    button("delete", "Delete", "danger"),
  ];
}
