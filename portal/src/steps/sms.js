// Step 2, SMS notifications: the two consents, generating a toll-free number, linking numbers to URLs.

import { ApiError } from "../api.js";
import { formatDate, h, liveRegion, newId, replace } from "../dom.js";
import { describeOperation, followOperation } from "./phone-operation.js";

const CONSENTS = [
  {
    key: "terms",
    label: "I accept the SMS terms: the connector rents a toll-free number in my organisation's name and texts patients only about their virtual visits; patients can reply STOP to opt out.",
  },
  {
    key: "data",
    label: "I consent to data processing: patients' mobile numbers are read from Cerner when a message is sent and passed to Azure Communication Services to deliver it; they are never stored.",
  },
];

export const smsStep = {
  id: "sms",
  title: "SMS notifications",
  async render(container, ctx) {
    const stops = new Set();
    let tenant = await ctx.api.get("tenant");
    let endpoints = [];
    let numbers = { phone_numbers: [], operations: [] };

    // --- consents ------------------------------------------------------------------
    const consentStatus = liveRegion({ class: "form-status" });
    const boxes = {};
    const consentForm = h("form", { class: "card", "aria-labelledby": "consents-title", novalidate: true },
      h("h3", { id: "consents-title" }, "Consent"),
      h("p", {}, "SMS confirmations and reminders need both consents. Untick one to switch SMS off."),
      h("fieldset", { class: "field" }, h("legend", {}, "SMS consents"),
        CONSENTS.map(({ key, label }) => {
          const id = newId(`consent-${key}`);
          const recorded = h("p", { class: "hint", id: `${id}-recorded` });
          boxes[key] = { input: h("input", { type: "checkbox", id, name: key, "aria-describedby": `${id}-recorded` }), recorded };
          return h("div", { class: "choice consent" }, boxes[key].input, h("label", { for: id }, label), recorded);
        })),
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Save consents")),
      consentStatus);
    const drawConsents = () => {
      for (const { key } of CONSENTS) {
        const consent = tenant.sms?.[`${key}_consent`];
        boxes[key].input.checked = Boolean(consent);
        boxes[key].recorded.textContent = consent ? `Given ${formatDate(consent.at)}.` : "Not given.";
      }
    };
    consentForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = consentForm.querySelector("button[type=submit]");
      button.disabled = true;
      try {
        tenant = await ctx.api.put("sms/consents", { terms: boxes.terms.input.checked, data: boxes.data.input.checked });
        drawConsents();
        consentStatus.say(tenant.sms?.enabled ? "Consents saved. SMS is on." : "Consents saved. SMS is off until both are given.", "ok");
      } catch (err) {
        consentStatus.say(`Could not save the consents: ${err.message}`, "bad");
      } finally {
        button.disabled = false;
      }
    });

    // --- numbers -------------------------------------------------------------------
    const numberList = h("div", {});
    const progress = h("div", { class: "progress", hidden: true });
    const progressText = liveRegion({ class: "operation-status" });
    const generateError = h("p", { class: "field-error", id: newId("generate-error"), hidden: true });
    const generate = h("button", { type: "button", class: "primary", "aria-describedby": generateError.id, onclick: () => startGeneration() }, "Generate a number");
    const numbersCard = h("section", { class: "card", "aria-labelledby": "numbers-title" },
      h("h3", { id: "numbers-title" }, "Phone numbers"),
      h("p", {}, "Patients receive texts from a toll-free number. Generating one searches for a number and purchases it; it can take a few minutes."),
      numberList,
      h("div", { class: "actions" }, generate), generateError,
      progress, progressText);

    const endpointName = (id) => {
      const endpoint = endpoints.find((e) => e.endpoint_id === id);
      return endpoint ? endpoint.display_name || endpoint.base_url : id;
    };
    const drawNumbers = () => {
      const list = numbers.phone_numbers || [];
      if (!list.length) {
        replace(numberList, h("p", { class: "empty" }, "No number yet."));
        return;
      }
      replace(numberList, h("ul", { class: "numbers", "aria-label": "Phone numbers" }, list.map((n) =>
        h("li", {},
          h("strong", {}, n.phone_number), " ",
          h("span", { class: `badge ${n.state}` }, n.state),
          h("span", { class: "detail" }, (n.linked_endpoint_ids || []).length
            ? ` linked to ${n.linked_endpoint_ids.map(endpointName).join(", ")}`
            : " not linked")))));
    };

    const showOperation = (op) => {
      progress.hidden = op.status !== "running";
      replace(progress, op.status === "running"
        ? h("progress", { "aria-label": "Generating a number", ...(op.step === "purchasing" ? { max: "2", value: "1" } : {}) })
        : null);
      progressText.say(describeOperation(op), op.status === "failed" ? "bad" : op.status === "succeeded" ? "ok" : "");
      generate.disabled = op.status === "running";
    };
    const follow = (operation) => {
      const stop = followOperation(ctx.api, operation, async (op) => {
        showOperation(op);
        if (op.status === "succeeded" || op.status === "failed") {
          stops.delete(stop);
          await reloadNumbers();
        }
      });
      stops.add(stop);
    };
    const startGeneration = async () => {
      generateError.hidden = true;
      generate.disabled = true;
      try {
        follow(await ctx.api.post("phone-numbers", { country_code: "US" }));
      } catch (err) {
        if (err instanceof ApiError && err.code === "provisioning_in_progress" && err.body.operation_id) {
          // A number is already on its way (another tab, a double click): show that one.
          follow({ operation_id: err.body.operation_id, status: "running", step: "searching" });
          return;
        }
        generate.disabled = false;
        const problems = err instanceof ApiError ? err.problems.map((p) => p.message) : [];
        generateError.textContent = [err.message, ...problems].join(" ");
        generateError.hidden = false;
        generate.focus();
      }
    };

    // --- links ---------------------------------------------------------------------
    const linksBody = h("div", {});
    const linkStatus = liveRegion({ class: "form-status" });
    const linksCard = h("section", { class: "card", "aria-labelledby": "links-title" },
      h("h3", { id: "links-title" }, "Link numbers to FHIR base URLs"),
      h("p", {}, "Messages for appointments from a URL are sent from its number. One number can serve several URLs."),
      linksBody, linkStatus);
    const drawLinks = () => {
      const active = (numbers.phone_numbers || []).filter((n) => n.state === "active");
      if (!endpoints.length) {
        replace(linksBody, h("p", { class: "empty" }, "Add a FHIR base URL first (step 1)."));
        return;
      }
      replace(linksBody, h("ul", { class: "links" }, endpoints.map((endpoint) => {
        const name = endpoint.display_name || endpoint.base_url;
        const id = newId("link");
        const select = h("select", { id, name: `number-${endpoint.endpoint_id}`, value: endpoint.linked_number || "" },
          h("option", { value: "" }, "No number"),
          active.map((n) => h("option", { value: n.phone_number }, n.phone_number)));
        return h("li", { class: "link-row" },
          h("label", { for: id }, `Number for ${name}`),
          h("div", { class: "inline" }, select,
            h("button", { type: "button", onclick: () => saveLink(endpoint, select.value) }, "Link"),
            endpoint.linked_number ? h("button", { type: "button", onclick: () => saveLink(endpoint, ""), "aria-label": `Unlink ${endpoint.linked_number} from ${name}` }, "Unlink") : null));
      })));
    };
    const saveLink = async (endpoint, number) => {
      const name = endpoint.display_name || endpoint.base_url;
      const path = `endpoints/${encodeURIComponent(endpoint.endpoint_id)}/phone-number`;
      try {
        // With the ETag this page read the endpoint with: a change made meanwhile is not overwritten.
        if (number) await ctx.api.put(path, { phone_number: number }, endpoint.etag);
        else await ctx.api.delete(path, endpoint.etag);
        linkStatus.say(number ? `Linked ${number} to ${name}.` : `Unlinked the number from ${name}.`, "ok");
        await reloadNumbers();
      } catch (err) {
        if (err instanceof ApiError && err.code === "concurrency_conflict") {
          // Changed meanwhile (another tab, another admin): show what is saved now, then let the admin choose again.
          await reloadNumbers().catch(() => {});
          linkStatus.say(`Someone changed ${name} meanwhile, so its number was not changed. The links now show what is saved: choose again.`, "bad");
          return;
        }
        linkStatus.say(`Could not change the number of ${name}: ${err.message}`, "bad");
      }
    };

    const reloadNumbers = async () => {
      [numbers, endpoints] = await Promise.all([
        ctx.api.get("phone-numbers"),
        ctx.api.get("endpoints").then((r) => r.endpoints || []),
      ]);
      drawNumbers();
      drawLinks();
    };

    replace(container,
      h("p", { class: "lead" }, "Optional: text patients a confirmation, reminders and their join link."),
      consentForm, numbersCard, linksCard);
    drawConsents();
    await reloadNumbers();
    // An operation started earlier (another visit, another tab) is still followed.
    for (const op of numbers.operations || []) if (op.status === "running") follow(op);
    return () => stops.forEach((stop) => stop());
  },
};
