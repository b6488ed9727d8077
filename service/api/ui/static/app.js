// Entry point: asks for the API key, draws the frame, and routes #/... hashes to views.
// Each view returns a cleanup function that stops its timers and streams.

import { api, forgetKey, getKey, setKey } from "./api.js";
import { h, replace } from "./dom.js";
import { renderDetail } from "./views/detail.js";
import { renderEnqueue } from "./views/enqueue.js";
import { LIST_STATUSES, renderStatusList, renderTypeList } from "./views/list.js";
import { renderOverview } from "./views/overview.js";
import { renderSchedules } from "./views/schedules.js";

const root = document.getElementById("app");
let cleanup = null;
let navigation = 0;

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query) };
}

function pickView({ parts }) {
  const [first, second] = parts;
  if (!first) return renderOverview;
  if (first === "jobs" && LIST_STATUSES.includes(second)) return renderStatusList;
  if (first === "types" && second) return renderTypeList;
  if (first === "job" && second) return renderDetail;
  if (first === "enqueue") return renderEnqueue;
  if (first === "schedules") return renderSchedules;
  return null;
}

async function route() {
  if (!getKey()) return showLogin();
  if (!document.getElementById("view")) drawFrame();
  if (cleanup) cleanup();
  cleanup = null;
  const view = document.getElementById("view");
  const where = parseHash();
  markCurrentNav(where);
  const render = pickView(where);
  if (!render) {
    replace(view, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to the overview")));
    return;
  }
  replace(view, h("p", { class: "muted" }, "Loading…"));
  const token = ++navigation;
  const stop = (await render(view, where)) ?? null;
  // The operator may have moved on while this view loaded: stop it instead of keeping it.
  if (token !== navigation) stop?.();
  else cleanup = stop;
}

function markCurrentNav({ parts }) {
  const current = `#/${parts.join("/")}`;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function drawFrame() {
  const search = h(
    "form",
    { class: "search", role: "search" },
    h("label", { for: "search-id" }, "Find job by id"),
    h("input", { id: "search-id", name: "id", type: "search", placeholder: "job id", autocomplete: "off", required: true }),
    h("button", { type: "submit" }, "Find"),
  );
  search.addEventListener("submit", (event) => {
    event.preventDefault();
    const id = search.elements.id.value.trim();
    if (id) location.hash = `#/job/${encodeURIComponent(id)}`;
  });
  const signOut = h("button", { type: "button", class: "secondary" }, "Forget key");
  signOut.addEventListener("click", () => {
    forgetKey();
    showLogin();
  });
  const nav = h(
    "nav",
    { "aria-label": "Main" },
    h("a", { href: "#/" }, "Overview"),
    LIST_STATUSES.map((status) => h("a", { href: `#/jobs/${status}` }, status)),
    h("a", { href: "#/schedules" }, "Schedules"),
    h("a", { href: "#/enqueue", class: "primary-link" }, "Enqueue"),
  );
  replace(
    root,
    h("header", { class: "top" }, h("a", { href: "#/", class: "brand" }, "Job queue"), nav, search, signOut),
    h("main", { id: "view", tabindex: "-1" }),
    h("div", { id: "toasts", role: "status", "aria-live": "polite" }),
  );
}

function showLogin(message) {
  if (cleanup) cleanup();
  cleanup = null;
  navigation += 1;
  const error = h("p", { class: "error", id: "login-error", role: "alert" }, message ?? "");
  const form = h(
    "form",
    { class: "login", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Job queue dashboard"),
    h("p", {}, "Enter an API key. It is kept only in this browser tab (sessionStorage) and sent as a header."),
    h("label", { for: "api-key" }, "API key"),
    h("input", { id: "api-key", name: "key", type: "password", autocomplete: "off", required: true, "aria-describedby": "login-error" }),
    h("button", { type: "submit" }, "Open dashboard"),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    setKey(form.elements.key.value.trim());
    try {
      await api("/jobs/stats", { onUnauthorized: false });
    } catch (err) {
      forgetKey();
      error.textContent = err.status === 401 || err.status === 403 ? "That key was refused." : `Cannot reach the API: ${err.message}`;
      return;
    }
    drawFrame();
    route();
  });
  replace(root, form);
  form.elements.key.focus();
}

window.addEventListener("jq:unauthorized", () => {
  forgetKey();
  showLogin("The API refused the key; enter it again.");
});
window.addEventListener("hashchange", route);
route();
