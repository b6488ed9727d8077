// Enqueue form, built from the job type's payload JSON schema (GET /jobs/types). Simple
// fields get typed inputs; anything nested gets a JSON text area. Validation errors from the
// API (details.errors[].field = "data.x") are shown next to the field they name.

import { api } from "../api.js";
import { h, replace, toast } from "../dom.js";

const PRIORITIES = ["low", "normal", "high", "critical"];

/** GET /jobs/types in the form's shape: the types [{name, description, defaults, schema}] and
 * the bounds of each job option (service/queue/options.py states them; the API checks them). */
export function normalizeTypes(body) {
  return {
    types: body.items.map((t) => ({
      name: t.name, description: t.description, defaults: t.defaults, schema: t.payload_schema,
    })),
    limits: body.option_limits,
  };
}

export async function renderEnqueue(view, { params }) {
  let types;
  let limits;
  try {
    ({ types, limits } = normalizeTypes(await api("/jobs/types")));
  } catch (err) {
    replace(view, h("p", { class: "error", role: "alert" }, `Cannot load job types: ${err.message}`));
    return null;
  }
  if (!types.length) {
    replace(view, h("h1", {}, "Enqueue a job"), h("p", {}, "No job types are registered."));
    return null;
  }
  const chosen = types.find((t) => t.name === params.get("type")) ?? types[0];
  const typeSelect = h("select", { id: "field-type", name: "type" },
    types.map((t) => h("option", { value: t.name, selected: t === chosen }, t.name)));
  typeSelect.addEventListener("change", () => { location.hash = `#/enqueue?type=${encodeURIComponent(typeSelect.value)}`; });

  const payloadFields = schemaFields(chosen.schema);
  const formError = h("div", { class: "error", role: "alert", id: "form-error" });
  const form = h("form", { class: "enqueue", novalidate: true, "aria-labelledby": "h-enqueue" },
    h("div", { class: "field" }, h("label", { for: "field-type" }, "Job type"), typeSelect,
      chosen.description ? h("p", { class: "hint" }, chosen.description) : null),
    h("fieldset", {}, h("legend", {}, "Payload (data)"),
      payloadFields.length ? payloadFields.map((f) => f.element) : h("p", { class: "muted" }, "This type takes no data.")),
    h("fieldset", {}, h("legend", {}, "Options"), optionFields(chosen.defaults, limits)),
    formError,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Enqueue job")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form, formError);
    let body;
    try {
      body = { type: chosen.name, data: collect(payloadFields), ...collectOptions(form) };
    } catch (err) {
      formError.textContent = err.message;
      return;
    }
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const created = await api("/jobs/enqueue", { method: "POST", body });
      toast(`Enqueued ${created.type} job ${created.id}.`);
      location.hash = `#/job/${encodeURIComponent(created.id)}`;
    } catch (err) {
      showErrors(form, formError, err);
    } finally {
      submit.disabled = false;
    }
  });
  replace(view, h("h1", { id: "h-enqueue" }, "Enqueue a job"), form);
  return null;
}

function resolve(schema, root) {
  let node = schema;
  if (node.$ref) node = root.$defs?.[node.$ref.split("/").pop()] ?? {};
  const options = node.anyOf ?? node.oneOf;
  if (options) {
    const nonNull = options.filter((o) => o.type !== "null");
    if (nonNull.length === 1) return { ...resolve(nonNull[0], root), nullable: true, default: node.default, description: node.description, title: node.title };
  }
  return node;
}

function schemaFields(schema) {
  const required = new Set(schema.required ?? []);
  return Object.entries(schema.properties ?? {}).map(([name, raw]) => {
    const prop = { ...resolve(raw, schema), default: raw.default, description: raw.description ?? resolve(raw, schema).description };
    return field(name, prop, required.has(name));
  });
}

function field(name, prop, required) {
  const id = `field-data-${name}`;
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  const describedBy = `${hintId} ${errorId}`;
  let input;
  let kind = prop.type;
  if (prop.enum) {
    kind = "enum";
    input = h("select", { id, name, "aria-describedby": describedBy },
      required ? null : h("option", { value: "" }, "(default)"),
      prop.enum.map((v) => h("option", { value: JSON.stringify(v), selected: v === prop.default }, String(v))));
  } else if (kind === "integer" || kind === "number") {
    input = h("input", { id, name, type: "number", inputmode: kind === "integer" ? "numeric" : "decimal", step: kind === "integer" ? 1 : "any",
      min: prop.minimum ?? prop.exclusiveMinimum, max: prop.maximum ?? prop.exclusiveMaximum, value: prop.default, required, "aria-describedby": describedBy });
  } else if (kind === "boolean") {
    input = h("input", { id, name, type: "checkbox", checked: prop.default === true, "aria-describedby": describedBy });
  } else if (kind === "string") {
    input = h("input", { id, name, type: "text", value: prop.default, required, maxlength: prop.maxLength, "aria-describedby": describedBy });
  } else {
    kind = "json";
    input = h("textarea", { id, name, rows: 3, class: "mono", "aria-describedby": describedBy, placeholder: prop.type === "array" ? "[ ]" : prop.type === "object" ? "{ }" : "JSON" },
      prop.default === undefined ? "" : JSON.stringify(prop.default, null, 2));
  }
  const bounds = [prop.minimum !== undefined ? `≥ ${prop.minimum}` : null, prop.maximum !== undefined ? `≤ ${prop.maximum}` : null].filter(Boolean).join(", ");
  const jsonHint = kind === "json" ? `JSON ${prop.type === "array" ? "array" : prop.type === "object" ? "object" : "value"}` : null;
  const hint = [prop.description, jsonHint, bounds, required ? "required" : null].filter(Boolean).join(" · ");
  const element = h("div", { class: `field${kind === "boolean" ? " check" : ""}` },
    h("label", { for: id }, name), input,
    h("p", { class: "hint", id: hintId }, hint),
    h("p", { class: "field-error", id: errorId }));
  return { name, kind, input, element };
}

function collect(fields) {
  const data = {};
  for (const { name, kind, input } of fields) {
    if (kind === "boolean") { data[name] = input.checked; continue; }
    const raw = input.value.trim();
    if (raw === "") continue; // let the type's default apply
    if (kind === "integer" || kind === "number") data[name] = Number(raw);
    else if (kind === "enum") data[name] = JSON.parse(raw);
    else if (kind === "json") {
      try { data[name] = JSON.parse(raw); } catch { throw new Error(`${name}: not valid JSON`); }
    } else data[name] = raw;
  }
  return data;
}

function optionFields(defaults, limits) {
  const defaultPriority = defaults.priority;
  const numeric = (name, label, hint, attrs = {}) => {
    const id = `field-${name}`;
    const bound = limits[name];
    const min = bound.minimum ?? bound.exclusiveMinimum;
    return h("div", { class: "field" }, h("label", { for: id }, label),
      h("input", { id, name, type: "number", step: "any", min, max: bound.maximum, "aria-describedby": `${id}-hint ${id}-error`, ...attrs }),
      h("p", { class: "hint", id: `${id}-hint` }, hint), h("p", { class: "field-error", id: `${id}-error` }));
  };
  return [
    h("div", { class: "field" }, h("label", { for: "field-priority" }, "Priority"),
      h("select", { id: "field-priority", name: "priority", "aria-describedby": "field-priority-error" },
        PRIORITIES.map((p) => h("option", { value: p, selected: p === defaultPriority }, p))),
      h("p", { class: "field-error", id: "field-priority-error" })),
    numeric("delay_seconds", "Delay (seconds)", "Run no earlier than this many seconds from now."),
    numeric("attempts", "Attempts", `Total tries before it fails; type default ${defaults.attempts ?? "applies"}.`, { step: 1, placeholder: defaults.attempts }),
    numeric("timeout_seconds", "Timeout (seconds)", "Stop an attempt that runs longer.", { placeholder: defaults.timeout_seconds ?? "" }),
    h("div", { class: "field" }, h("label", { for: "field-idempotency_key" }, "Idempotency key"),
      h("input", { id: "field-idempotency_key", name: "idempotency_key", type: "text", autocomplete: "off", maxlength: limits.idempotency_key.maxLength, "aria-describedby": "field-idempotency_key-hint field-idempotency_key-error" }),
      h("p", { class: "hint", id: "field-idempotency_key-hint" }, "Enqueueing twice with the same key returns the first job."),
      h("p", { class: "field-error", id: "field-idempotency_key-error" })),
  ];
}

function collectOptions(form) {
  const options = { priority: form.elements.priority.value };
  for (const name of ["delay_seconds", "attempts", "timeout_seconds"]) {
    const raw = form.elements[name].value.trim();
    if (raw !== "") options[name] = Number(raw);
  }
  const key = form.elements.idempotency_key.value.trim();
  if (key) options.idempotency_key = key;
  return options;
}

function clearErrors(form, formError) {
  formError.textContent = "";
  for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
}

function showErrors(form, formError, err) {
  const errors = err.details?.errors ?? [];
  const unplaced = [];
  for (const e of errors) {
    const name = String(e.field ?? "");
    const id = name.startsWith("data.") ? `field-data-${name.slice(5).split(".")[0]}` : `field-${name.split(".")[0]}`;
    const input = form.querySelector(`#${CSS.escape(id)}`);
    const slot = form.querySelector(`#${CSS.escape(`${id}-error`)}`);
    if (input && slot) {
      input.setAttribute("aria-invalid", "true");
      slot.textContent = e.message ?? "invalid";
    } else {
      unplaced.push(`${name}: ${e.message}`);
    }
  }
  formError.textContent = errors.length ? `Not enqueued: fix the marked fields. ${unplaced.join("; ")}` : `Not enqueued: ${err.message}`;
}
