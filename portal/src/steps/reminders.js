// Step 3, confirmations and reminders: each FHIR base URL's SMS policy (If-Match on save), and a
// preview of every message in every language for a sample appointment.

import { ApiError } from "../api.js";
import { h, liveRegion, newId, replace } from "../dom.js";
import { clearProblems, field, fieldGroup, radioGroup, showProblems } from "../forms.js";

const MAX_REMINDERS = 5; // the API's limit
const DEFAULT_OFFSETS = [1440, 60]; // what a new policy starts with: a day and an hour before
const MESSAGES = [
  ["confirmation", "Confirmation", "when a video visit is first seen booked"],
  ["update", "Update", "when the visit's time changes after a confirmation"],
  ["cancellation", "Cancellation", "when the visit is cancelled after a confirmation"],
];
const KINDS = {
  confirmation: "Confirmation",
  update: "Update (new time)",
  cancellation: "Cancellation",
  reminder: "Reminder",
};
const LANGUAGES = [
  ["en", "English"],
  ["es", "Spanish (Español)"],
  ["de", "German (Deutsch)"],
  ["fr", "French (Français)"],
];
const languageName = (code) => LANGUAGES.find(([c]) => c === code)?.[1] || code;

/** "reminder offsets must differ" -> "Reminder offsets must differ." */
function sentence(text) {
  const s = String(text || "").trim();
  if (!s) return s;
  const capital = s.charAt(0).toUpperCase() + s.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

function splitOffset(minutes) {
  return { hours: Math.floor(minutes / 60), minutes: minutes % 60 };
}

function describeOffset(minutes) {
  const { hours, minutes: rest } = splitOffset(minutes);
  const parts = [];
  if (hours) parts.push(`${hours} ${hours === 1 ? "hour" : "hours"}`);
  if (rest || !hours) parts.push(`${rest} ${rest === 1 ? "minute" : "minutes"}`);
  return parts.join(" ");
}

const hhmm = (value) => String(value || "00:00").slice(0, 5);
const codes = (text) => text.split(/[\s,;]+/).map((c) => c.trim()).filter(Boolean);
const wholeNumber = (text) => (/^\d+$/.test(String(text).trim()) ? Number(text) : null);

/** What the connector needs before it texts for this URL (advice; the server decides). */
function readiness(endpoint, tenant) {
  return [
    [tenant?.sms?.enabled, "Both SMS consents are given", "Give both SMS consents", "sms"],
    [Boolean(endpoint.linked_number), `A phone number is linked${endpoint.linked_number ? ` (${endpoint.linked_number})` : ""}`,
      "Link a phone number to this URL", "sms"],
    [Boolean(endpoint.backend_client_id), "A backend service client id is set", "Enter the backend service client id", "configuration"],
    [(endpoint.location_ids || []).length > 0, "Departments to scan are set", "Enter the department location ids", "configuration"],
    [Boolean(endpoint.meeting_organizer) || Object.keys(endpoint.department_organizers || {}).length > 0,
      "A Teams meeting organizer is set (the messages carry the visit's link)", "Set the Teams meeting organizer", "configuration"],
  ];
}

export const remindersStep = {
  id: "reminders",
  title: "Confirmations and reminders",
  async render(container, ctx) {
    const status = liveRegion({ class: "step-status" });
    const picker = h("div", {});
    const formSlot = h("div", {});
    const [tenant, endpoints] = await Promise.all([
      ctx.api.get("tenant"),
      ctx.api.get("endpoints").then((r) => r.endpoints || []),
    ]);

    replace(container,
      h("p", { class: "lead" }, "Text patients a confirmation when a video visit is booked, an update when it moves, a cancellation, and reminders before it, in their language. Choose per FHIR base URL what is sent and when."),
      status, picker, formSlot);

    if (!endpoints.length) {
      replace(formSlot, h("p", { class: "empty" }, "Add a FHIR base URL first (step 1)."));
      return;
    }

    const open = async (endpoint) => {
      replace(formSlot, h("p", { role: "status" }, "Loading the reminder settings…"));
      try {
        const view = await ctx.api.get(`endpoints/${encodeURIComponent(endpoint.endpoint_id)}/reminder-policy`);
        const reload = async () => {
          await open(endpoint);
          status.say("Showing the saved settings. Make your changes again, then save.", "ok");
          formSlot.querySelector("h3")?.focus();
        };
        replace(formSlot, policyForm(ctx, { endpoint, tenant, view, status, reload }));
      } catch (err) {
        replace(formSlot, h("p", { class: "error-box", role: "alert" }, `The reminder settings could not load: ${err.message}`));
      }
    };

    if (endpoints.length > 1) {
      const id = newId("reminder-endpoint");
      const select = h("select", { id, name: "endpoint" },
        endpoints.map((e) => h("option", { value: e.endpoint_id }, e.display_name || e.base_url)));
      select.addEventListener("change", () => {
        status.say("");
        open(endpoints.find((e) => e.endpoint_id === select.value));
      });
      replace(picker, h("div", { class: "field" }, h("label", { for: id }, "FHIR base URL"), select));
    }
    await open(endpoints[0]);
  },
};

function policyForm(ctx, { endpoint, tenant, view, status, reload }) {
  const name = endpoint.display_name || endpoint.base_url;
  const policy = view.policy;
  const path = `endpoints/${encodeURIComponent(endpoint.endpoint_id)}/reminder-policy`;
  const zone = view.timezone || endpoint.timezone || "UTC";
  let etag = view.etag;

  // --- on / off and which messages -----------------------------------------------------------
  const enabledId = newId("reminders-enabled");
  const enabled = h("input", { type: "checkbox", role: "switch", id: enabledId, name: "enabled", checked: policy.enabled,
    "aria-describedby": `${enabledId}-hint` });
  const enabledWrap = h("div", { class: "field switch", "data-field": "enabled" },
    h("div", { class: "choice" }, enabled,
      h("label", { for: enabledId }, "Send SMS confirmations and reminders for this URL"),
      h("p", { class: "hint", id: `${enabledId}-hint` }, "Off: nothing is scanned or sent for it. Messages already on their way are checked again when they are due.")));
  enabledWrap.control = enabled;
  enabledWrap.setError = () => {};

  const boxes = {};
  const box = (key, label, detail, checked) => {
    const id = newId(`message-${key}`);
    boxes[key] = h("input", { type: "checkbox", id, name: key, checked });
    return h("div", { class: "choice" }, boxes[key], h("label", { for: id }, label, h("span", { class: "detail" }, ` ${detail}`)));
  };
  const hasReminders = (policy.reminder_offsets_minutes || []).length > 0;
  const messages = fieldGroup({
    legend: "Messages", name: "messages",
    children: [
      ...MESSAGES.map(([key, label, detail]) => box(key, label, detail, policy[key])),
      box("reminders", "Reminders", "at the times below, before the visit", hasReminders),
    ],
  });

  // --- reminder times --------------------------------------------------------------------------
  const rows = [];
  const addButton = h("button", { type: "button", onclick: () => { addRow({ hours: 1, minutes: 0 }); rows.at(-1).hours.focus(); } }, "Add a reminder time");
  const offsets = fieldGroup({
    legend: "Reminder times", name: "reminder_offsets_minutes", className: "offsets",
    hint: "How long before the visit starts; from 5 minutes to 14 days, up to five.",
  });
  const offsetsFooter = h("div", { class: "actions" }, addButton);
  offsets.insertBefore(offsetsFooter, offsets.querySelector(".field-error"));
  const renumber = () => {
    rows.forEach((row, i) => {
      row.legend.textContent = `Reminder ${i + 1}`;
      row.remove.setAttribute("aria-label", `Remove reminder ${i + 1}`);
    });
    addButton.disabled = rows.length >= MAX_REMINDERS;
  };
  function addRow({ hours, minutes }) {
    const hoursId = newId("offset-hours");
    const minutesId = newId("offset-minutes");
    const number = (id, value, max, unit) => h("input", {
      type: "number", id, name: unit, inputmode: "numeric", min: "0", max, step: "1", value: String(value),
    });
    const row = {
      legend: h("legend", {}),
      hours: number(hoursId, hours, "336", "hours"),
      minutes: number(minutesId, minutes, "59", "minutes"),
    };
    row.remove = h("button", { type: "button", class: "remove", onclick: () => {
      const index = rows.indexOf(row);
      rows.splice(index, 1);
      row.el.remove();
      renumber();
      (rows[Math.min(index, rows.length - 1)]?.hours || addButton).focus();
    } }, "Remove");
    row.el = h("fieldset", { class: "offset-row" }, row.legend,
      h("div", { class: "offset-inputs" },
        h("div", { class: "unit" }, h("label", { for: hoursId }, "Hours"), row.hours),
        h("div", { class: "unit" }, h("label", { for: minutesId }, "Minutes"), row.minutes),
        row.remove));
    rows.push(row);
    offsets.body.append(row.el);
    renumber();
  }
  (hasReminders ? policy.reminder_offsets_minutes : DEFAULT_OFFSETS).forEach((m) => addRow(splitOffset(m)));
  const syncReminders = () => {
    offsets.hidden = !boxes.reminders.checked;
  };
  boxes.reminders.addEventListener("change", syncReminders);
  syncReminders();

  // --- quiet hours -----------------------------------------------------------------------------
  const quietStartId = newId("quiet-start");
  const quietEndId = newId("quiet-end");
  const quietStart = h("input", { type: "time", id: quietStartId, name: "quiet_hours_start", value: hhmm(policy.quiet_hours_start) });
  const quietEnd = h("input", { type: "time", id: quietEndId, name: "quiet_hours_end", value: hhmm(policy.quiet_hours_end) });
  const quiet = fieldGroup({
    legend: "Quiet hours", name: "quiet_hours", className: "quiet",
    hint: `In the clinic's time zone (${zone}). A message due in between waits for their end, unless the visit is sooner. 00:00 to 00:00: no quiet hours.`,
    children: [h("div", { class: "offset-inputs" },
      h("div", { class: "unit" }, h("label", { for: quietStartId }, "From"), quietStart),
      h("div", { class: "unit" }, h("label", { for: quietEndId }, "To"), quietEnd))],
  });

  // --- language, country, look-ahead -----------------------------------------------------------
  const fields = {
    enabled: enabledWrap,
    messages,
    reminder_offsets_minutes: offsets,
    quiet_hours: quiet,
    default_language: field({
      name: "default_language", label: "Default language",
      hint: "For patients whose chart names no language we write in.",
      control: h("select", { name: "default_language", value: policy.default_language },
        LANGUAGES.map(([code, label]) => h("option", { value: code }, label))),
    }),
    country: radioGroup({
      legend: "Country", name: "country", value: policy.country,
      hint: "Cerner keeps phone numbers as digits: this country's code makes them whole.",
      options: [{ value: "US", label: "United States", detail: " (+1)" }, { value: "CA", label: "Canada", detail: " (+1)" }],
    }),
    look_ahead_days: field({
      name: "look_ahead_days", label: "Look ahead (days)",
      hint: "How far ahead each scan reads appointments, from 1 to 30 days.",
      control: h("input", { type: "number", inputmode: "numeric", min: "1", max: "30", step: "1", value: String(policy.look_ahead_days) }),
    }),
  };
  const rule = policy.virtual_visit || {};
  const videoId = newId("cerner-video");
  const video = h("input", { type: "checkbox", id: videoId, name: "cerner_video_visit", checked: rule.cerner_video_visit });
  fields.cerner_video_visit = h("div", { class: "choice", "data-field": "cerner_video_visit" }, video,
    h("label", { for: videoId }, "Cerner video visits", h("span", { class: "detail" }, " (the Video Visit appointment type or a Virtual Meeting Room)")));
  fields.cerner_video_visit.control = video;
  fields.cerner_video_visit.setError = () => {};
  fields.appointment_type_codes = field({
    name: "appointment_type_codes", label: "Appointment type codes",
    hint: "Your Cerner appointment type codes that are virtual, separated by commas.",
    control: h("input", { type: "text", autocomplete: "off", spellcheck: "false", value: (rule.appointment_type_codes || []).join(", ") }),
  });
  fields.service_type_codes = field({
    name: "service_type_codes", label: "Service type codes",
    hint: "Service type codes that make an appointment virtual, separated by commas.",
    control: h("input", { type: "text", autocomplete: "off", spellcheck: "false", value: (rule.service_type_codes || []).join(", ") }),
  });
  // The quiet-hours fields' own names go to their group too.
  const problemFields = { ...fields, quiet_hours_start: quiet, quiet_hours_end: quiet };

  // --- readiness, actions, preview -------------------------------------------------------------
  const checks = readiness(endpoint, tenant);
  const missing = checks.filter(([ok]) => !ok);
  const readinessList = h("section", { class: "readiness", "aria-labelledby": `${enabledId}-ready` },
    h("h4", { id: `${enabledId}-ready` }, missing.length ? "Before messages go out" : "Ready to send"),
    h("ul", {}, checks.map(([ok, done, todo, step]) => h("li", { class: ok ? "ok" : "todo" },
      h("span", { "aria-hidden": "true" }, ok ? "✓ " : "✗ "),
      h("span", { class: "visually-hidden" }, ok ? "Done: " : "To do: "),
      ok ? done : [todo, " ", h("button", { type: "button", class: "link", onclick: () => ctx.go(step) },
        step === "sms" ? "in SMS notifications" : "in Configuration information")]))));

  const summary = h("p", { class: "error-box", role: "alert", hidden: true });
  const saveButton = h("button", { type: "submit", class: "primary" }, "Save");
  const previewButton = h("button", { type: "button", onclick: () => preview() }, "Preview messages");
  const reloadButton = h("button", { type: "button", hidden: true, onclick: () => reload() }, "Reload the saved settings");
  const previewSlot = h("div", { class: "preview-slot" });
  const headingId = newId("reminders-form");
  const form = h("form", { class: "card reminders-form", novalidate: true, "aria-labelledby": headingId },
    h("h3", { id: headingId, tabindex: "-1" }, `Reminders for ${name}`),
    summary, readinessList,
    enabledWrap, messages, offsets, quiet,
    h("div", { class: "grid" }, fields.default_language, fields.look_ahead_days),
    fields.country,
    h("fieldset", { class: "field" }, h("legend", {}, "Which appointments are virtual"),
      fields.cerner_video_visit, h("div", { class: "grid" }, fields.appointment_type_codes, fields.service_type_codes)),
    h("div", { class: "actions" }, saveButton, previewButton, reloadButton),
    previewSlot);

  // --- values and checks -----------------------------------------------------------------------
  function values() {
    const problems = [];
    const minutes = [];
    if (boxes.reminders.checked) {
      rows.forEach((row, i) => {
        const hours = wholeNumber(row.hours.value);
        const mins = wholeNumber(row.minutes.value);
        if (hours === null || mins === null) {
          problems.push({ field: "reminder_offsets_minutes", message: `Reminder ${i + 1}: enter whole hours and minutes.` });
        } else minutes.push(hours * 60 + mins);
      });
      if (!rows.length) problems.push({ field: "reminder_offsets_minutes", message: "Add a reminder time, or untick Reminders." });
    }
    const days = wholeNumber(fields.look_ahead_days.control.value);
    if (days === null) problems.push({ field: "look_ahead_days", message: "Enter a whole number of days." });
    for (const [input, label] of [[quietStart, "start"], [quietEnd, "end"]]) {
      if (!/^\d{2}:\d{2}/.test(input.value)) problems.push({ field: "quiet_hours", message: `Enter the quiet hours' ${label} as hh:mm.` });
    }
    const body = {
      enabled: enabled.checked,
      confirmation: boxes.confirmation.checked,
      update: boxes.update.checked,
      cancellation: boxes.cancellation.checked,
      reminder_offsets_minutes: minutes,
      quiet_hours_start: `${hhmm(quietStart.value)}:00`,
      quiet_hours_end: `${hhmm(quietEnd.value)}:00`,
      default_language: fields.default_language.control.value,
      country: fields.country.value() || "US",
      look_ahead_days: days ?? 0,
      virtual_visit: {
        cerner_video_visit: video.checked,
        appointment_type_codes: codes(fields.appointment_type_codes.control.value),
        service_type_codes: codes(fields.service_type_codes.control.value),
      },
    };
    return { body, problems };
  }

  /** The API's problems, placed: the model's own (field "body") quiet-hours rule goes to its group. */
  function place(problems) {
    return problems.map((p) => {
      const message = sentence(p.message);
      if ((!p.field || p.field === "body") && /quiet hours/i.test(p.message)) return { field: "quiet_hours", message };
      return { ...p, message };
    });
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearProblems(problemFields, summary);
    reloadButton.hidden = true;
    const { body, problems } = values();
    if (problems.length) {
      showProblems(problemFields, problems, summary);
      status.say("Some settings need a look: see the messages next to them.", "bad");
      return;
    }
    saveButton.disabled = true;
    status.say("Saving…");
    try {
      const saved = await ctx.api.put(path, body, etag);
      etag = saved.etag;
      // The server keeps the reminder times longest first: show them as saved.
      const kept = saved.policy.reminder_offsets_minutes || [];
      if (boxes.reminders.checked && kept.length === rows.length) {
        kept.forEach((m, i) => {
          const { hours, minutes } = splitOffset(m);
          rows[i].hours.value = String(hours);
          rows[i].minutes.value = String(minutes);
        });
      }
      const when = kept.length ? ` Reminders ${kept.map(describeOffset).join(" and ")} before the visit.` : "";
      status.say(saved.policy.enabled
        ? `Saved. Messages are on for ${name}.${when}`
        : `Saved. Messages are off for ${name}.`, "ok");
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) {
        status.say("Someone changed this URL's settings meanwhile. Reload the saved settings, then make your changes again.", "bad");
        reloadButton.hidden = false;
        reloadButton.focus();
      } else if (err instanceof ApiError && err.problems.length) {
        showProblems(problemFields, place(err.problems), summary);
        status.say("Not saved: some settings need a look.", "bad");
      } else {
        showProblems(problemFields, [{ message: err.message }], summary);
        status.say(`Not saved: ${err.message}`, "bad");
      }
    } finally {
      saveButton.disabled = false;
    }
  });

  async function preview() {
    previewButton.disabled = true;
    status.say("Writing every message in every language…");
    try {
      const answer = await ctx.api.post(`${path}/preview`, {});
      const list = answer.messages || [];
      const off = (kind) => (kind === "reminder" ? !boxes.reminders.checked : boxes[kind] && !boxes[kind].checked);
      const kinds = [...new Set(list.map((m) => m.kind))];
      const titleId = newId("preview-title");
      const sectionEl = h("section", { class: "preview", "aria-labelledby": titleId },
        h("h4", { id: titleId, tabindex: "-1" }, "Preview"),
        h("p", { class: "hint" }, `For a sample appointment tomorrow at 10:00 (${zone}), with a sample join link. Patients get their chart's language, else the default.`),
        kinds.map((kind) => {
          const kindId = newId(`preview-${kind}`);
          return h("section", { class: "preview-kind", "aria-labelledby": kindId },
            h("h5", { id: kindId }, KINDS[kind] || kind, off(kind) ? h("span", { class: "detail" }, " (not sent: ticked off above)") : null),
            h("ul", { class: "preview-messages", "aria-label": `${KINDS[kind] || kind} in every language` },
              list.filter((m) => m.kind === kind).map((m) => h("li", { class: "preview-message" },
                h("p", { class: "preview-meta" }, h("strong", {}, languageName(m.language)), " · ",
                  h("span", { class: m.segments > 2 ? "bad" : "" }, `${m.segments} SMS ${m.segments === 1 ? "segment" : "segments"}${m.segments > 2 ? " (too long)" : ""}`)),
                h("p", { class: "sms", lang: m.language }, m.text)))));
        }));
      replace(previewSlot, sectionEl);
      const languages = new Set(list.map((m) => m.language)).size;
      status.say(`Preview: ${list.length} messages, ${kinds.length} kinds in ${languages} languages.`, "ok");
      sectionEl.querySelector("h4").focus();
    } catch (err) {
      replace(previewSlot, h("p", { class: "error-box", role: "alert" }, `The preview could not load: ${err.message}`));
      status.say("");
    } finally {
      previewButton.disabled = false;
    }
  }

  return form;
}
