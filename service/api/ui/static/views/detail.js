// Job detail: everything about one job, kept live by the job's SSE stream (read with fetch so
// the key stays in a header). Each event triggers a re-read of the job, so what is shown is
// always the API's full view, not a patched copy.

import { cancelJob, retryJob } from "../actions.js";
import { api, getKey, streamEvents } from "../api.js";
import { badge, fmtJson, fmtTime, h, jobBadge, jobState, replace, shortId } from "../dom.js";
import { priorityLabel } from "./list.js";

const TERMINAL = ["completed", "failed", "cancelled"];
const CANCELLABLE = ["delayed", "pending", "processing", "active", "waiting-children"];
const RETRYABLE = ["failed", "cancelled"];
// If the stream cannot be opened or drops, re-read the job this often until it finishes.
const FALLBACK_POLL_MS = 2000;
const EVENT_DEBOUNCE_MS = 150;
const WATCHDOG_MS = 5000;

export async function renderDetail(view, { parts }) {
  const id = parts[1];
  const path = `/jobs/${encodeURIComponent(id)}`;
  const state = { job: null, stopped: false, stream: null, poll: null, debounce: null, watchdog: null, drawn: null };

  const title = h("h1", { class: "mono" }, `Job ${id}`);
  const actions = h("div", { class: "actions" });
  const summary = h("div", { class: "summary" });
  const progressBar = h("progress", { id: "job-progress", max: 100, value: 0, "aria-label": "Progress" });
  const progressText = h("span", { class: "progress-text", "data-testid": "progress-text" }, "0%");
  const progressMessage = h("span", { class: "muted" });
  const sections = h("div", { class: "grid" });
  const live = h("p", { class: "muted small", "data-testid": "live-state" });
  // Outside what draw() replaces: a fallback field the operator is copying from stays put.
  const curlStatus = h("p", { class: "muted small curl-status", role: "status", "data-testid": "curl-status" });
  const curlBox = h("div", { class: "curl-box" });
  replace(
    view,
    h("div", { class: "title-row" }, title, actions),
    curlStatus,
    curlBox,
    summary,
    h("section", { class: "panel", "aria-labelledby": "h-progress" },
      h("h2", { id: "h-progress" }, "Progress"), h("div", { class: "progress-row" }, progressBar, progressText, progressMessage)),
    sections,
    live,
  );

  async function reload() {
    let job;
    try {
      job = await api(path);
    } catch (err) {
      if (err.status === 404 || err.status === 422) {
        // 422: the id cannot be a job id at all (bad characters), which is "not found" too.
        replace(view, h("h1", {}, "Job not found"), h("p", {}, err.message), h("p", {}, h("a", { href: "#/" }, "Back to the overview")));
        stop();
        return;
      }
      live.textContent = `Cannot load the job: ${err.message}; trying again.`;
      rearm();
      return;
    }
    if (state.stopped) return;
    state.job = job;
    // Redraw only what changed: an unchanged job keeps the operator's scroll position,
    // text selection and the open/closed state of the stack trace.
    const snapshot = JSON.stringify(job);
    if (snapshot !== state.drawn) {
      state.drawn = snapshot;
      draw(job);
    }
    follow(job);
  }

  function draw(job) {
    const status = jobState(job);
    replace(summary,
      h("dl", { class: "facts" },
        fact("Status", jobBadge(job), "job-status"),
        fact("Type", h("a", { href: `#/types/${encodeURIComponent(job.type)}` }, job.type)),
        fact("Priority", priorityLabel(job.priority)),
        fact("Attempts", `${job.attempts_made ?? 0} of ${job.max_attempts ?? "?"}`, "job-attempts"),
        fact("Created", fmtTime(job.created_at)),
        fact("Scheduled for", fmtTime(job.scheduled_for)),
        fact("Started", job.reserved && !job.started_at ? "not yet (reserved)" : fmtTime(job.started_at)),
        fact("Finished", fmtTime(job.finished_at)),
        fact("Worker", job.worker_id ?? "—"),
        job.timeout_seconds ? fact("Timeout", `${job.timeout_seconds} s`) : null,
        job.idempotency_key ? fact("Idempotency key", job.idempotency_key) : null,
        job.stalls ? fact("Stalls (lease expired)", String(job.stalls)) : null,
        job.parent_id ? fact("Flow parent", jobLink(job.parent_id), "job-parent") : null,
        job.waiting_for !== null && job.waiting_for !== undefined
          ? fact("Waiting for", `${job.waiting_for} of ${(job.children ?? []).length} children`, "job-waiting-for") : null,
      ));
    drawProgress(job.progress ?? 0, job.progress_message);
    drawActions(status);
    replace(sections,
      panel("Data", h("pre", { "data-testid": "job-data" }, fmtJson(job.data ?? {}))),
      panel("Result", job.result === null || job.result === undefined
        ? h("p", { class: "muted" }, TERMINAL.includes(status) ? "No result." : "Not finished yet.")
        : h("pre", { "data-testid": "job-result" }, fmtJson(job.result))),
      job.result === null || job.result === undefined ? null : panel("Artifacts", artifactList(path)),
      job.error || job.traceback ? panel("Error", h("p", { class: "error", "data-testid": "job-error" }, job.error ?? ""),
        job.traceback ? h("details", { open: true }, h("summary", {}, "Stack trace"),
          // Not wrapped (indentation is the point of a trace): it scrolls by itself, by
          // keyboard too (focusable), and the page never does sideways.
          h("pre", { class: "trace", tabindex: 0, "aria-label": "Stack trace", "data-testid": "job-traceback" }, job.traceback)) : null, "wide") : null,
      job.children ? panel("Flow children", flowChildren(job), "wide") : null,
      panel("Timeline", timeline(job.timeline ?? [])),
      panel("Attempts", attempts(job)),
      panel("Log", logs(job.logs ?? []), "wide"),
    );
  }

  function drawProgress(value, message) {
    const pct = Math.max(0, Math.min(100, Number(value) || 0));
    progressBar.value = pct;
    progressBar.setAttribute("value", String(pct));
    progressBar.setAttribute("aria-valuetext", `${Math.round(pct)}%`);
    progressText.textContent = `${Math.round(pct)}%`;
    progressMessage.textContent = message ?? "";
  }

  function drawActions(status) {
    const buttons = [];
    if (CANCELLABLE.includes(status)) {
      const b = h("button", { type: "button", class: "danger" }, "Cancel job");
      b.addEventListener("click", async () => { if (await cancelJob(id)) reload(); });
      buttons.push(b);
    }
    if (RETRYABLE.includes(status)) {
      const b = h("button", { type: "button" }, "Retry job");
      b.addEventListener("click", async () => { b.disabled = true; if (await retryJob(id)) reload(); else b.disabled = false; });
      buttons.push(b);
    }
    buttons.push(h("a", { href: `#/enqueue?type=${encodeURIComponent(state.job.type)}`, class: "button secondary" }, "Enqueue another"));
    buttons.push(h("button", { type: "button", class: "secondary", onclick: () => copyAsCurl(state.job, curlBox, curlStatus) }, "Copy as curl"));
    replace(actions, buttons);
  }

  // Keep exactly one live source while the job can still change: the SSE stream, or polling
  // when the stream is unavailable. Nothing runs once the job has finished.
  function follow(job) {
    const done = TERMINAL.includes(jobState(job));
    if (done) {
      stopStream();
      clearTimeout(state.watchdog);
      live.textContent = "Finished; no more updates.";
      return;
    }
    if (!state.stream && !state.poll) startStream();
    rearm();
  }

  // Pub/sub can drop a message and a request can fail: while the job can still change, it is
  // re-read at least every WATCHDOG_MS whatever the stream says, so the page never goes stale.
  function rearm() {
    if (state.stopped) return;
    clearTimeout(state.watchdog);
    state.watchdog = setTimeout(reload, WATCHDOG_MS);
  }

  function startStream() {
    const controller = new AbortController();
    state.stream = controller;
    live.textContent = "Live: following the job's events.";
    streamEvents(`${path}/events`, onEvent, controller.signal)
      .catch((err) => { if (!controller.signal.aborted) live.textContent = `Stream unavailable (${err.message}); polling.`; })
      .finally(() => {
        if (state.stream !== controller || state.stopped) return;
        state.stream = null;
        if (!TERMINAL.includes(jobState(state.job ?? {}))) {
          state.poll = setTimeout(() => { state.poll = null; reload(); }, FALLBACK_POLL_MS);
        } else {
          reload();
        }
      });
  }

  function onEvent(event) {
    let data = null;
    try { data = JSON.parse(event.data); } catch { /* keep-alive or plain text */ }
    if (data && typeof data.progress === "number") drawProgress(data.progress, data.message ?? data.progress_message);
    clearTimeout(state.debounce);
    state.debounce = setTimeout(reload, EVENT_DEBOUNCE_MS);
  }

  function stopStream() {
    if (state.stream) { const c = state.stream; state.stream = null; c.abort(); }
    clearTimeout(state.poll);
    state.poll = null;
  }

  function stop() {
    state.stopped = true;
    clearTimeout(state.debounce);
    clearTimeout(state.watchdog);
    stopStream();
  }

  await reload();
  return stop;
}

// Copy as curl: a command that enqueues this job again by hand, with its type, data and options
// as the job detail has them. The URL and key are shell variables, so the real key lands in no
// clipboard, terminal history or ticket. The idempotency key is left out: with it the API would
// answer with this job instead of enqueueing a new one.
function curlCommand(job) {
  const body = { type: job.type, data: job.data ?? {}, priority: job.priority, attempts: job.max_attempts };
  if (job.backoff) body.backoff = job.backoff;
  if (job.timeout_seconds) body.timeout_seconds = job.timeout_seconds;
  return [
    `curl -sS -X POST "$JOBQUEUE_URL/jobs/enqueue"`,
    `  -H "X-API-Key: $JOBQUEUE_API_KEY"`,
    "  -H 'Content-Type: application/json'",
    `  --data-binary ${shellQuote(JSON.stringify(body))}`,
  ].join(" \\\n");
}

// One single-quoted shell word: nothing inside expands; each ' closes, is escaped, reopens.
function shellQuote(text) {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

// The Clipboard API needs a secure context and the page's permission; without it the command
// is shown selected in a read-only field, for Ctrl+C (or a long press on a phone).
async function copyAsCurl(job, box, status) {
  const command = curlCommand(job);
  try {
    if (!navigator.clipboard?.writeText) throw new Error("no Clipboard API");
    await navigator.clipboard.writeText(command);
    replace(box);
    status.textContent = "Copied: a curl command that enqueues this job again (set JOBQUEUE_URL and JOBQUEUE_API_KEY first).";
  } catch {
    const field = h("textarea", { class: "curl", readonly: true, rows: 5, spellcheck: "false", "aria-label": "curl command", "data-testid": "curl-command", wrap: "off" });
    field.value = command;
    replace(box, field);
    field.focus();
    field.select();
    field.scrollTo(0, 0); // the selection ends bottom right; the command starts top left
    status.textContent = "Copying is not available here: the command is selected, copy it with Ctrl+C (⌘C).";
  }
}

function jobLink(id) {
  return h("a", { href: `#/job/${encodeURIComponent(id)}`, class: "mono", title: id }, shortId(id));
}

// A flow parent's children with their states; a child that is itself a parent links to its
// own page, where its children are listed the same way (the tree, one level per page).
function flowChildren(job) {
  const children = job.children ?? [];
  if (!children.length) return h("p", { class: "muted" }, "No children.");
  const failures = job.children_failures ?? {};
  return [
    h("p", { class: "muted small" }, `On a child's failure: ${job.on_child_failure ?? "fail"}.`),
    h("ul", { class: "flow-children", "aria-label": "Children", "data-testid": "job-children" },
      children.map((c) => h("li", {}, jobLink(c.id), " ", badge(c.status ?? "deleted"),
        failures[c.id] ? h("span", { class: "error small" }, ` ${failures[c.id]}`) : null))),
  ];
}

function fact(label, value, testid) {
  return h("div", {}, h("dt", {}, label), h("dd", testid ? { "data-testid": testid } : {}, value));
}

function panel(title, ...content) {
  const wide = content[content.length - 1] === "wide";
  const children = wide ? content.slice(0, -1) : content;
  const headingId = `h-${title.toLowerCase().replace(/\W+/g, "-")}`;
  return h("section", { class: `panel${wide ? " wide" : ""}`, "aria-labelledby": headingId }, h("h2", { id: headingId }, title), children);
}

function timeline(entries) {
  if (!entries.length) return h("p", { class: "muted" }, "No state changes recorded.");
  return h("ol", { class: "timeline", "aria-label": "State changes" },
    entries.map((e) => h("li", {}, badge(e.state ?? e.status), " ", h("time", { datetime: e.at }, fmtTime(e.at)), e.note ? h("span", { class: "muted" }, ` ${e.note}`) : null)));
}

// Each "processing" entry of the timeline starts an attempt; the entry after it says how that
// attempt ended. The API keeps no separate attempt records, so this is derived, not stored.
const OUTCOME = { completed: "completed", failed: "failed", delayed: "failed, retry scheduled", pending: "handed back (worker stopped)", cancelled: "cancelled" };

function attempts(job) {
  const entries = job.timeline ?? [];
  const runs = [];
  entries.forEach((e, i) => {
    if ((e.status ?? e.state) !== "processing") return;
    const next = entries[i + 1];
    const outcome = next ? OUTCOME[next.status ?? next.state] ?? (next.status ?? next.state) : "running";
    runs.push({ at: e.at, worker: e.note, outcome, ended: next?.at });
  });
  const rows = [["Attempts made", `${job.attempts_made ?? 0} of ${job.max_attempts ?? "?"}`]];
  if (job.backoff) rows.push(["Backoff", `${job.backoff.type}, ${job.backoff.delay_seconds} s base, max ${job.backoff.max_delay_seconds} s`]);
  return [
    h("dl", { class: "facts compact" }, rows.map(([k, v]) => fact(k, v))),
    runs.length
      ? h("ol", { class: "attempts", "aria-label": "Runs" }, runs.map((r) => h("li", {}, `${fmtTime(r.at)} on ${r.worker ?? "?"}: ${r.outcome}`, r.ended ? ` (${fmtTime(r.ended)})` : "")))
      : h("p", { class: "muted" }, "Not run yet."),
  ];
}

// Artifacts: the list comes from the API; a download is fetched with the key header (a plain
// link cannot send it) and handed to the browser as an object URL. `redirect: "manual"` keeps
// the key from following the S3 store's 307 to another host.
function artifactList(jobPath) {
  const box = h("div", { "data-testid": "job-artifacts" }, h("p", { class: "muted" }, "Loading…"));
  api(`${jobPath}/artifacts`).then(({ items }) => replace(box, items.length
    ? h("ul", { class: "artifacts" }, items.map((a) => h("li", {},
      h("button", { type: "button", class: "secondary", onclick: (e) => download(a, e.target) }, a.name),
      h("span", { class: "muted" }, ` ${a.content_type}${a.size_bytes === null ? "" : `, ${a.size_bytes} bytes`}`))))
    : h("p", { class: "muted" }, "No artifacts.")))
    .catch((err) => replace(box, h("p", { class: "error" }, `Cannot list the artifacts: ${err.message}`)));
  return box;
}

async function download(artifact, button) {
  const response = await fetch(artifact.download_url, { headers: { "X-API-Key": getKey() ?? "" }, redirect: "manual", cache: "no-store" });
  if (response.type === "opaqueredirect") {
    button.after(h("span", { class: "muted" }, " (stored in S3: use `jobqueue artifacts ID --out DIR`)"));
    return;
  }
  if (!response.ok) {
    button.after(h("span", { class: "error" }, ` download failed: ${response.status}`));
    return;
  }
  const url = URL.createObjectURL(await response.blob());
  const link = h("a", { href: url, download: artifact.name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

function logs(lines) {
  if (!lines.length) return h("p", { class: "muted" }, "No log lines.");
  const text = lines.join("\n"); // the API's log lines are strings (JobDetail.logs)
  return h("pre", { class: "log", "data-testid": "job-log" }, text);
}
