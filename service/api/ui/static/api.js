// The dashboard's only door to the server: every call carries the API key from
// sessionStorage in a header. The key never goes into a URL, the page, or localStorage.

const KEY_NAME = "jobqueue.apiKey";

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details ?? {};
  }
}

export function getKey() {
  return sessionStorage.getItem(KEY_NAME);
}

export function setKey(key) {
  sessionStorage.setItem(KEY_NAME, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_NAME);
}

function headers(extra = {}) {
  return { "X-API-Key": getKey() ?? "", Accept: "application/json", ...extra };
}

async function toError(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's error page): fall back to the status line.
  }
  const err = body?.error ?? {};
  const message = err.message ?? body?.detail ?? `${response.status} ${response.statusText}`;
  return new ApiError(response.status, err.code ?? "http_error", String(message), err.details);
}

/** Call the API; resolves to the JSON body, rejects with ApiError. */
export async function api(path, { method = "GET", body, signal, onUnauthorized = true } = {}) {
  const init = { method, headers: headers(), signal, cache: "no-store" };
  if (body !== undefined) {
    init.headers = headers({ "Content-Type": "application/json" });
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401 || response.status === 403) {
    const error = await toError(response);
    // Views hand a refused key back to the login form; the login form reports it itself.
    if (onUnauthorized) window.dispatchEvent(new CustomEvent("jq:unauthorized", { detail: error }));
    throw error;
  }
  if (!response.ok) throw await toError(response);
  if (response.status === 204) return null;
  return response.json();
}

/**
 * Read a Server-Sent Events stream with fetch, because EventSource cannot send the key header.
 * Calls onEvent({event, data, id}) per event; resolves when the stream ends.
 */
export async function streamEvents(path, onEvent, signal) {
  const response = await fetch(path, {
    headers: headers({ Accept: "text/event-stream" }),
    signal,
    cache: "no-store",
  });
  if (!response.ok) throw await toError(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let end = buffer.indexOf("\n\n");
    while (end >= 0) {
      const event = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (event) onEvent(event);
      end = buffer.indexOf("\n\n");
    }
  }
}

function parseEvent(block) {
  const event = { event: "message", data: "", id: null };
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue; // comments are keep-alives
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "data") data.push(value);
    else if (field === "event") event.event = value;
    else if (field === "id") event.id = value;
  }
  if (!data.length) return null;
  event.data = data.join("\n");
  return event;
}
