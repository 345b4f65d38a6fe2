// Form fields with real labels, hints and errors tied to the control (aria-describedby).

import { h, newId } from "./dom.js";

/** A labelled control. `control` is an <input>/<select>/<textarea> built by the caller. */
export function field({ label, control, hint, name }) {
  const id = control.id || newId(`f-${name}`);
  control.id = id;
  control.name = control.name || name;
  const hintEl = hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null;
  const errorEl = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  setDescribedBy(control, hintEl, null);
  const wrapper = h("div", { class: "field", "data-field": name }, h("label", { for: id }, label), hintEl, control, errorEl);
  wrapper.control = control;
  wrapper.setError = (message) => {
    errorEl.textContent = message || "";
    errorEl.hidden = !message;
    if (message) control.setAttribute("aria-invalid", "true");
    else control.removeAttribute("aria-invalid");
    setDescribedBy(control, hintEl, message ? errorEl : null);
  };
  return wrapper;
}

/** A radio group in a fieldset with a legend; the error belongs to the group. */
export function radioGroup({ legend, name, options, value, hint }) {
  const groupId = newId(`g-${name}`);
  const hintEl = hint ? h("p", { class: "hint", id: `${groupId}-hint` }, hint) : null;
  const errorEl = h("p", { class: "field-error", id: `${groupId}-error`, hidden: true });
  const radios = options.map((option) => {
    const id = newId(`r-${name}`);
    return h(
      "div",
      { class: "choice" },
      h("input", { type: "radio", id, name, value: option.value, checked: option.value === value }),
      h("label", { for: id }, option.label, option.detail ? h("span", { class: "detail" }, option.detail) : null),
    );
  });
  const fieldset = h("fieldset", { class: "field", "data-field": name, id: groupId }, h("legend", {}, legend), hintEl, radios, errorEl);
  setDescribedBy(fieldset, hintEl, null);
  fieldset.value = () => fieldset.querySelector(`input[name="${name}"]:checked`)?.value || null;
  fieldset.setValue = (v) => fieldset.querySelectorAll(`input[name="${name}"]`).forEach((r) => (r.checked = r.value === v));
  fieldset.control = fieldset.querySelector("input");
  fieldset.setError = (message) => {
    errorEl.textContent = message || "";
    errorEl.hidden = !message;
    fieldset.querySelectorAll("input").forEach((r) => (message ? r.setAttribute("aria-invalid", "true") : r.removeAttribute("aria-invalid")));
    setDescribedBy(fieldset, hintEl, message ? errorEl : null);
  };
  return fieldset;
}

/**
 * Several controls in a fieldset with a legend (hours and minutes, a from-to pair); the error
 * belongs to the group and marks every control in it. `children` may change later (rows added).
 */
export function fieldGroup({ legend, name, hint, children = [], className = "" }) {
  const groupId = newId(`g-${name}`);
  const hintEl = hint ? h("p", { class: "hint", id: `${groupId}-hint` }, hint) : null;
  const errorEl = h("p", { class: "field-error", id: `${groupId}-error`, hidden: true });
  const body = h("div", { class: "group-body" }, children);
  const fieldset = h("fieldset", { class: `field group ${className}`.trim(), "data-field": name, id: groupId },
    h("legend", {}, legend), hintEl, body, errorEl);
  setDescribedBy(fieldset, hintEl, null);
  fieldset.body = body;
  const controls = () => [...fieldset.querySelectorAll("input, select, textarea")];
  Object.defineProperty(fieldset, "control", { get: () => controls()[0] || null });
  fieldset.setError = (message) => {
    errorEl.textContent = message || "";
    errorEl.hidden = !message;
    controls().forEach((c) => (message ? c.setAttribute("aria-invalid", "true") : c.removeAttribute("aria-invalid")));
    setDescribedBy(fieldset, hintEl, message ? errorEl : null);
  };
  return fieldset;
}

function setDescribedBy(el, hintEl, errorEl) {
  const ids = [hintEl?.id, errorEl?.id].filter(Boolean).join(" ");
  if (ids) el.setAttribute("aria-describedby", ids);
  else el.removeAttribute("aria-describedby");
}

/**
 * Show the API's problems next to their fields. `fields` maps API field names to the
 * wrappers built above; problems naming no known field go to `summary`. Focuses the
 * first field in error. Returns the number of problems shown.
 */
export function showProblems(fields, problems, summary) {
  clearProblems(fields, summary);
  const unplaced = [];
  const byField = new Map();
  for (const problem of problems) {
    const key = fieldKey(problem.field, fields);
    if (!key) unplaced.push(problem);
    else byField.set(key, [...(byField.get(key) || []), problem.message]);
  }
  for (const [key, messages] of byField) fields[key].setError(messages.join(" "));
  if (summary && unplaced.length) {
    summary.textContent = unplaced.map((p) => (p.field ? `${p.field}: ${p.message}` : p.message)).join(" ");
    summary.hidden = false;
  }
  const first = Object.values(fields).find((f) => f.control?.getAttribute("aria-invalid") === "true");
  first?.control?.focus();
  return problems.length;
}

export function clearProblems(fields, summary) {
  Object.values(fields).forEach((f) => f.setError(null));
  if (summary) {
    summary.textContent = "";
    summary.hidden = true;
  }
}

/** "body.base_url", "location_ids[0]", "location_ids.0" -> the form's field name. */
function fieldKey(name, fields) {
  if (!name) return null;
  const parts = String(name).split(/[.[\]/]+/).filter(Boolean);
  return parts.find((part) => part in fields) || null;
}
