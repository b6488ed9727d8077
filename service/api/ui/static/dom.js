// Tiny DOM helpers. Everything from job data goes in through textContent or attributes,
// never innerHTML, so a payload like "<img onerror=...>" is shown, not run.

const SVG_NS = "http://www.w3.org/2000/svg";
const TOASTS_SHOWN = 2;
const TOAST_MS = 4000;

/** Build an element: h("a", {href: "#/x", class: "y"}, "text", child, ...). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

/** Build an SVG element (charts). */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A date as local "YYYY-MM-DD HH:MM:SS"; "—" for none. */
export function fmtTime(value) {
  if (!value) return "—";
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  const pad = (n) => String(n).padStart(2, "0");
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** "3 s ago", "5 min ago" for a timestamp. */
export function fmtAgo(value) {
  if (!value) return "—";
  const seconds = Math.max(0, (Date.now() - new Date(value).getTime()) / 1000);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

/** JSON pretty-printed for a <pre>. */
export function fmtJson(value) {
  return JSON.stringify(value, null, 2);
}

/** A job's state whatever the API calls the field. */
export function jobState(job) {
  return job.status ?? job.state ?? "unknown";
}

/** A status badge. */
export function badge(state) {
  return h("span", { class: `badge state-${state}` }, state);
}

/** A job's status badge, marked "reserved" when it is leased but its code has not started. */
export function jobBadge(job) {
  const state = jobState(job);
  if (!job.reserved) return badge(state);
  return h("span", { class: "job-state" }, badge(state), " ",
    h("span", { class: "badge state-reserved", "data-testid": "reserved", title: "prefetched by a worker, waiting for a free slot: its code has not started" }, "reserved"));
}

/** A short form of a job id for tables (the full id is in the link's title). */
export function shortId(id) {
  return id.length > 12 ? `${id.slice(0, 12)}…` : id;
}

/** Ask for confirmation in a modal <dialog>; resolves true when confirmed. */
export function confirmDialog(message, confirmLabel = "Confirm") {
  return new Promise((resolve) => {
    const dialog = h(
      "dialog",
      { class: "confirm", "aria-label": "Confirm action" },
      h("p", {}, message),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", value: "no", class: "secondary" }, "Keep"),
        h("button", { type: "button", value: "yes", class: "danger" }, confirmLabel),
      ),
    );
    dialog.addEventListener("click", (event) => {
      const button = event.target.closest("button");
      if (button) dialog.close(button.value);
    });
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "yes");
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Show a transient message in the page's status area (announced to screen readers). */
export function toast(message, kind = "info") {
  const area = document.getElementById("toasts");
  if (!area) return;
  const item = h("div", { class: `toast ${kind}` }, message);
  area.append(item);
  // Keep only the newest few, so a burst of actions cannot cover the page.
  while (area.children.length > TOASTS_SHOWN) area.firstElementChild.remove();
  setTimeout(() => item.remove(), TOAST_MS);
}
