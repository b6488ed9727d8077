// Operator actions shared by several views. Each asks for confirmation first.

import { api } from "./api.js";
import { confirmDialog, toast } from "./dom.js";

// Upper bound on one "retry all": a runaway loop must not fire unbounded requests.
const RETRY_ALL_LIMIT = 10_000;

/** Cancel one job; resolves to the job, or null when the operator changed their mind. */
export async function cancelJob(id) {
  if (!(await confirmDialog(`Cancel job ${id}?`, "Cancel job"))) return null;
  try {
    const job = await api(`/jobs/${encodeURIComponent(id)}`, { method: "DELETE" });
    toast(`Job ${id} cancelled.`);
    return job;
  } catch (err) {
    toast(`Cannot cancel: ${err.message}`, "error");
    return null;
  }
}

/** Run a failed or cancelled job again. */
export async function retryJob(id) {
  try {
    const job = await api(`/jobs/${encodeURIComponent(id)}/retry`, { method: "POST" });
    toast(`Job ${id} queued again.`);
    return job;
  } catch (err) {
    toast(`Cannot retry: ${err.message}`, "error");
    return null;
  }
}

/** Retry every failed job. Ids are collected first, so a job that fails again is not retried twice. */
export async function retryAllFailed() {
  try {
    return await retryAll();
  } catch (err) {
    toast(`Cannot retry failed jobs: ${err.message}`, "error");
    return 0;
  }
}

async function retryAll() {
  const ids = [];
  let cursor = null;
  do {
    const query = new URLSearchParams({ limit: "500" });
    if (cursor) query.set("cursor", cursor);
    const page = await api(`/jobs/failed?${query}`);
    ids.push(...page.items.map((job) => job.id));
    cursor = page.next_cursor;
  } while (cursor && ids.length < RETRY_ALL_LIMIT);
  if (!ids.length) {
    toast("There are no failed jobs.");
    return 0;
  }
  if (!(await confirmDialog(`Retry all ${ids.length} failed job(s)?`, "Retry all"))) return 0;
  let done = 0;
  for (const id of ids) {
    try {
      await api(`/jobs/${encodeURIComponent(id)}/retry`, { method: "POST" });
      done += 1;
    } catch {
      // Already retried elsewhere or removed by retention: skip it, report the count.
    }
  }
  toast(`${done} of ${ids.length} failed job(s) queued again.`);
  return done;
}
