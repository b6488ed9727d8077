// Follows the queue-wide change stream (GET /ui/api/events) so views refresh the moment jobs
// change, and tells the view whether the stream is up so it can poll faster when it is not.

import { streamEvents } from "./api.js";

// After a dropped stream, wait this long before reconnecting (the view polls meanwhile).
const RECONNECT_MS = 3000;

/**
 * Call onChange() whenever jobs change and onLink(true|false) when the stream connects or
 * drops. Returns a function that stops following.
 */
export function followQueue(onChange, onLink) {
  const controller = new AbortController();
  let timer = null;
  async function connect() {
    try {
      await streamEvents("/ui/api/events", (event) => {
        if (event.event === "ready") onLink(true);
        else if (event.event === "changes") onChange();
      }, controller.signal);
    } catch {
      // Network error, 503, or aborted: handled the same way below.
    }
    if (controller.signal.aborted) return;
    onLink(false);
    timer = setTimeout(connect, RECONNECT_MS);
  }
  connect();
  return () => {
    controller.abort();
    clearTimeout(timer);
  };
}

/**
 * Run refresh() now, then on every change (coalesced) and on a timer: `slowMs` while the
 * stream is up (workers' heartbeats and the charts move without job changes), `fastMs` while
 * it is down. Nothing is fetched while the tab is hidden. Returns a stop function.
 */
export function keepFresh(refresh, { fastMs = 2000, slowMs = 10000, onError } = {}) {
  let linked = false;
  let stopped = false;
  let timer = null;
  let running = null;
  let again = false;

  async function run() {
    if (running) {
      again = true; // one more pass after this one, never two at once
      return running;
    }
    clearTimeout(timer);
    running = (async () => {
      try {
        if (!document.hidden) await refresh();
      } catch (err) {
        onError?.(err);
      }
    })();
    await running;
    running = null;
    if (stopped) return;
    if (again) {
      again = false;
      run();
      return;
    }
    timer = setTimeout(run, linked ? slowMs : fastMs);
  }

  const unfollow = followQueue(() => run(), (up) => { linked = up; });
  const onVisible = () => { if (!document.hidden) run(); };
  document.addEventListener("visibilitychange", onVisible);
  const first = run();
  const stop = () => {
    stopped = true;
    clearTimeout(timer);
    unfollow();
    document.removeEventListener("visibilitychange", onVisible);
  };
  return { first, stop, refresh: run };
}
