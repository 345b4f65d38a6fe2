// The form to add or change one FHIR base URL: Validate shows the checks; Save validates server-side.

import { ApiError } from "../api.js";
import { h, liveRegion, newId } from "../dom.js";
import { clearProblems, field, radioGroup, showProblems } from "../forms.js";
import { readableProblem, renderValidationReport } from "./validation-report.js";

const CLIENT_FIELDS = [
  ["provider_client_id", "Provider app client id", "From Cerner's code console: the app clinicians launch from PowerChart."],
  ["patient_client_id", "Patient app client id", "The app patients launch from the patient portal."],
  ["backend_client_id", "Backend service client id", "The system account that reads appointments for reminders."],
];

// Optional fields an admin may empty again (sent as null, which clears them).
const CLEARABLE = new Set(["provider_client_id", "patient_client_id", "backend_client_id", "meeting_organizer",
  "client_secret_name"]);

function browserTimezone() {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch {
    return "";
  }
}

function timezoneList(id) {
  let zones = [];
  try {
    zones = Intl.supportedValuesOf("timeZone");
  } catch {
    zones = [];
  }
  return h("datalist", { id }, zones.map((zone) => h("option", { value: zone })));
}

/** endpoint: an EndpointView to change, or null to add one. */
export function endpointForm(ctx, { endpoint = null, onSaved, onCancel }) {
  const editing = Boolean(endpoint);
  const zonesId = newId("timezones");
  const text = (name, value, attrs = {}) => h("input", { type: "text", name, value: value ?? "", autocomplete: "off", ...attrs });
  const fields = {
    base_url: field({
      name: "base_url", label: "FHIR base URL",
      hint: "The R4 base URL from Cerner, e.g. https://fhir-ehr.cerner.com/r4/<tenant id>.",
      control: h("input", { type: "url", value: endpoint?.base_url ?? "", required: true, autocomplete: "off", spellcheck: "false", inputmode: "url" }),
    }),
    environment: radioGroup({
      legend: "Environment", name: "environment", value: endpoint?.environment ?? "test",
      options: [
        { value: "test", label: "Test", detail: " (non-production Cerner domain)" },
        { value: "production", label: "Production", detail: " (live patients; https and public addresses only)" },
      ],
    }),
    display_name: field({
      name: "display_name", label: "Display name", hint: "How this endpoint is named in the portal and reports.",
      control: text("display_name", endpoint?.display_name),
    }),
    location_ids: field({
      name: "location_ids", label: "Department location ids",
      hint: "Cerner Location ids of the departments to scan for reminders, separated by commas.",
      control: text("location_ids", (endpoint?.location_ids || []).join(", ")),
    }),
    timezone: field({
      name: "timezone", label: "Time zone", hint: "IANA name, e.g. America/Chicago. Reminder times are in this zone.",
      control: text("timezone", endpoint?.timezone ?? browserTimezone(), { list: zonesId }),
    }),
  };
  for (const [name, label, hint] of CLIENT_FIELDS) {
    fields[name] = field({ name, label, hint, control: text(name, endpoint?.[name]) });
  }
  fields.meeting_organizer = field({
    name: "meeting_organizer", label: "Teams meeting organizer",
    hint: "The Microsoft 365 account (user principal name or object id) that owns this clinic's video visits. "
      + "It needs a Teams application access policy for the connector (see the README).",
    control: text("meeting_organizer", endpoint?.meeting_organizer, { spellcheck: "false" }),
  });
  const authSelect = h("select", { name: "client_auth" },
    [["public", "Public client (PKCE, no secret)"], ["client_secret_basic", "Client secret (HTTP Basic)"],
      ["private_key_jwt", "Private key JWT (our JWKS URL)"]].map(([value, label]) =>
      h("option", { value, selected: (endpoint?.client_auth ?? "public") === value ? true : null }, label)));
  fields.client_auth = field({
    name: "client_auth", label: "Token endpoint authentication",
    hint: "As registered in Cerner's code console for the provider and patient apps.", control: authSelect,
  });
  fields.client_secret_name = field({
    name: "client_secret_name", label: "Client secret setting",
    hint: "For a client secret: the NAME in the app setting CONNECTOR_CLIENT_SECRET_<your tenant id without dashes>_NAME that holds it (a Key Vault reference).",
    control: text("client_secret_name", endpoint?.client_secret_name, { spellcheck: "false" }),
  });
  const writeBack = h("input", { type: "checkbox", name: "write_back_links", checked: endpoint?.write_back_links ? true : null });
  fields.write_back_links = field({
    name: "write_back_links", label: "Write visit links into Cerner",
    hint: "Put the Teams and patient links into the video-visit appointment so PowerChart shows them.",
    control: writeBack,
  });

  const summary = h("p", { class: "error-box", role: "alert", hidden: true });
  const status = liveRegion({ class: "form-status" });
  const reportSlot = h("div", { class: "report-slot" });
  const validateButton = h("button", { type: "button", onclick: () => validate() }, "Validate");
  const saveButton = h("button", { type: "submit", class: "primary" }, editing ? "Save changes" : "Save");
  const headingId = newId("endpoint-form");
  const form = h("form", { class: "card endpoint-form", novalidate: true, "aria-labelledby": headingId },
    h("h3", { id: headingId, tabindex: "-1" }, editing ? `Change ${endpoint.display_name || endpoint.base_url}` : "Add a FHIR base URL"),
    summary,
    fields.base_url, fields.environment,
    h("div", { class: "grid" }, fields.display_name, fields.timezone),
    fields.location_ids,
    h("div", { class: "grid" }, fields.meeting_organizer, fields.write_back_links),
    h("details", { class: "client-ids", open: !editing || !endpoint.provider_client_id ? true : null },
      h("summary", {}, "Cerner client ids"),
      h("div", { class: "grid" }, CLIENT_FIELDS.map(([name]) => fields[name]), fields.client_auth,
        fields.client_secret_name)),
    timezoneList(zonesId),
    h("div", { class: "actions" },
      validateButton, saveButton,
      onCancel ? h("button", { type: "button", onclick: onCancel }, "Cancel") : null),
    status, reportSlot);

  function values() {
    const value = (name) => fields[name].control.value.trim();
    const body = {
      base_url: value("base_url"),
      environment: fields.environment.value(),
      display_name: value("display_name"),
      location_ids: value("location_ids").split(/[\s,;]+/).filter(Boolean),
      timezone: value("timezone"),
    };
    for (const [name] of CLIENT_FIELDS) body[name] = value(name);
    body.meeting_organizer = value("meeting_organizer");
    body.client_auth = fields.client_auth.control.value;
    body.client_secret_name = value("client_secret_name");
    body.write_back_links = fields.write_back_links.control.checked;
    return body;
  }

  function localProblems(body) {
    const problems = [];
    if (!body.base_url) problems.push({ field: "base_url", message: "Enter the FHIR base URL." });
    if (!body.environment) problems.push({ field: "environment", message: "Pick test or production." });
    return problems;
  }

  function showReport(report) {
    const { el, summary: sentence } = renderValidationReport(report);
    reportSlot.replaceChildren(el);
    status.say(sentence, report.ok ? "ok" : "bad");
  }

  function showError(err) {
    if (!(err instanceof ApiError)) {
      showProblems(fields, [{ message: err.message }], summary);
      return;
    }
    const report = err.body.validation;
    const problems = err.problems.map((p) => ({ ...p, message: readableProblem(p.message, report) }));
    if (report) showReport(report);
    if (err.status === 409 && !problems.length) {
      problems.push({ field: editing ? null : "base_url", message: err.message });
    }
    if (err.code === "validation_failed" && !problems.some((p) => p.field === "base_url")) {
      problems.push({ field: "base_url", message: err.message || "This URL did not pass validation: see the checks below." });
    }
    if (!problems.length) problems.push({ message: err.message });
    showProblems(fields, problems, summary);
    if (err.code !== "validation_failed") status.say("");
  }

  async function validate() {
    const body = values();
    clearProblems(fields, summary);
    reportSlot.replaceChildren();
    const problems = localProblems(body);
    if (problems.length) return showProblems(fields, problems, summary);
    validateButton.disabled = true;
    status.say("Validating… this can take a few seconds.");
    try {
      showReport(await ctx.api.post("endpoints/validate", { base_url: body.base_url, environment: body.environment }));
    } catch (err) {
      showError(err);
    } finally {
      validateButton.disabled = false;
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = values();
    clearProblems(fields, summary);
    const problems = localProblems(body);
    if (problems.length) return showProblems(fields, problems, summary);
    saveButton.disabled = true;
    status.say("Validating and saving…");
    try {
      let saved;
      if (editing) {
        const changes = Object.fromEntries(Object.entries(body)
          .filter(([k, v]) => JSON.stringify(v) !== JSON.stringify(endpoint[k] ?? (Array.isArray(v) ? [] : "")))
          .filter(([k, v]) => !(v === "" && endpoint[k] == null)) // an empty optional field that was unset
          .map(([k, v]) => [k, v === "" && CLEARABLE.has(k) ? null : v])); // an emptied optional field is cleared
        if (!Object.keys(changes).length) {
          status.say("Nothing changed.");
          return;
        }
        saved = await ctx.api.patch(`endpoints/${encodeURIComponent(endpoint.endpoint_id)}`, changes, endpoint.etag);
      } else {
        // Optional fields left empty are left out, not sent as "".
        saved = await ctx.api.post("endpoints", Object.fromEntries(Object.entries(body).filter(([, v]) => v !== "")));
      }
      status.say(`Saved ${saved.display_name || saved.base_url}.`, "ok");
      onSaved(saved);
    } catch (err) {
      if (err instanceof ApiError && err.code === "concurrency_conflict" && editing) {
        status.say("Someone changed this endpoint meanwhile. Reload the list and try again.", "bad");
      }
      showError(err);
    } finally {
      saveButton.disabled = false;
    }
  });

  return form;
}
