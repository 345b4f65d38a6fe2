// A ValidationReport shown check by check: passed, failed or skipped, each with its sentence.

import { h } from "../dom.js";

const VERDICT = {
  true: { label: "Passed", tone: "pass", mark: "✓" },
  false: { label: "Failed", tone: "fail", mark: "✗" },
  null: { label: "Skipped", tone: "skip", mark: "–" },
};

// The API's check names, as people read them; unknown names are spelled out from the id.
const TITLES = {
  url_syntax: "URL",
  public_address: "Public address",
  metadata: "CapabilityStatement",
  smart_discovery: "SMART discovery",
  authorize_endpoint: "Authorize endpoint",
  token_endpoint: "Token endpoint",
  cerner_tenant: "Cerner tenant id",
};

export function checkTitle(name) {
  if (TITLES[name]) return TITLES[name];
  const text = String(name || "").replace(/[_-]+/g, " ").trim();
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** The report as an element, plus a one-sentence summary for a live region. */
export function renderValidationReport(report) {
  const checks = Array.isArray(report?.checks) ? report.checks : [];
  const count = (v) => checks.filter((c) => (c.passed ?? null) === v).length;
  const failed = count(false);
  const summary = report?.ok
    ? `Validation passed: ${count(true)} checks passed${count(null) ? `, ${count(null)} skipped` : ""}.`
    : `Validation failed: ${failed} of ${checks.length} checks failed${count(null) ? `, ${count(null)} skipped` : ""}.`;
  const list = h("ol", { class: "checks" }, checks.map((check, i) => {
    const verdict = VERDICT[check.passed ?? null] || VERDICT.null;
    return h("li", { class: `check ${verdict.tone}`, style: `--i:${i}`, "data-check": check.name },
      h("span", { class: "verdict" }, h("span", { "aria-hidden": "true" }, verdict.mark), ` ${verdict.label}`),
      h("span", { class: "check-text" }, h("strong", { class: "check-name" }, checkTitle(check.name)), h("span", { class: "visually-hidden" }, ": "),
        h("span", { class: "check-message" }, check.message || "")));
  }));
  const facts = report?.ok
    ? h("dl", { class: "facts" },
        fact("FHIR version", report.fhir_version),
        fact("Cerner tenant", report.cerner_tenant_id),
        fact("Authorize URL", report.authorize_url),
        fact("Token URL", report.token_url))
    : null;
  const el = h("div", { class: `report ${report?.ok ? "report-ok" : "report-bad"}` },
    h("h3", {}, report?.ok ? "Validation passed" : "Validation failed"), list, facts);
  return { el, summary };
}

/** "public_address: 127.0.0.1 is ..." (a 422 problem) -> "Public address: 127.0.0.1 is ...". */
export function readableProblem(message, report) {
  for (const check of report?.checks || []) {
    const prefix = `${check.name}: `;
    if (String(message).startsWith(prefix)) return `${checkTitle(check.name)}: ${message.slice(prefix.length)}`;
  }
  return message;
}

function fact(label, value) {
  return value ? [h("dt", {}, label), h("dd", {}, h("code", {}, value))] : null;
}
