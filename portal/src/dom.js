// Tiny DOM helpers: build elements without innerHTML (values from the API are never parsed as HTML).

const PROPERTIES = new Set(["value", "checked", "disabled", "hidden", "selected"]);

/** h("button", {type: "button", onclick: fn, class: "x"}, "text", child...) */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  const later = [];
  for (const [key, value] of Object.entries(props || {})) {
    if (value == null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (PROPERTIES.has(key)) later.push([key, value]);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  for (const [key, value] of later) el[key] = value; // after the options of a <select> exist
  return el;
}

export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

let uid = 0;
/** A document-unique id with a readable prefix. */
export function newId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

/** A polite live region; say() replaces its text so screen readers announce it. */
export function liveRegion(props = {}) {
  const el = h("p", { role: "status", "aria-live": "polite", ...props });
  el.say = (text, tone) => {
    el.textContent = text;
    el.dataset.tone = tone || "";
  };
  return el;
}

export function formatDate(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}
