// Step 4, review and finish: each URL's integration record to copy into Cerner's code console.

import { ApiError } from "../api.js";
import { copyText } from "../clipboard.js";
import { saveResponse } from "../download.js";
import { h, liveRegion, replace } from "../dom.js";

const SCOPE_KINDS = [
  ["provider", "Provider app scopes"],
  ["patient", "Patient app scopes"],
  ["backend", "Backend service scopes"],
];

export const reviewStep = {
  id: "review",
  title: "Review and finish",
  async render(container, ctx) {
    const status = liveRegion({ class: "step-status" });
    const endpoints = (await ctx.api.get("endpoints")).endpoints || [];
    const records = await Promise.all(endpoints.map((e) =>
      ctx.api.get(`endpoints/${encodeURIComponent(e.endpoint_id)}/integration-record`).catch((err) => ({ error: err }))));

    const copyRow = (label, value, what) => {
      if (value == null || value === "") return null;
      const text = Array.isArray(value) ? value.join(" ") : String(value);
      return [
        h("dt", {}, label),
        h("dd", {}, h("code", {}, text), " ",
          h("button", {
            type: "button", class: "copy", "aria-label": `Copy ${label} for ${what}`,
            onclick: async () => status.say((await copyText(text)) ? `Copied the ${label} for ${what}.` : `Copying did not work: select the ${label} and copy it by hand.`, "ok"),
          }, "Copy")),
      ];
    };

    const recordCard = (endpoint, record) => {
      const name = endpoint.display_name || endpoint.base_url;
      if (record.error) {
        return h("article", { class: "card record", "aria-label": name }, h("h3", {}, name),
          h("p", { class: "bad" }, `The integration record could not load: ${record.error.message}`));
      }
      const download = async () => {
        try {
          const resp = await ctx.api.fetch(`endpoints/${encodeURIComponent(endpoint.endpoint_id)}/integration-record?download=true`);
          if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => null));
          const file = await saveResponse(resp, `integration-record-${endpoint.endpoint_id}.json`);
          status.say(`Downloaded ${file}.`, "ok");
        } catch (err) {
          status.say(`The download failed: ${err.message}`, "bad");
        }
      };
      const ids = record.client_ids || {};
      return h("article", { class: "card record", "aria-label": `Integration record for ${name}` },
        h("h3", {}, name, " ", h("span", { class: `badge ${record.environment}` }, record.environment)),
        h("dl", { class: "record-facts" },
          copyRow("FHIR base URL", record.base_url, name),
          copyRow("Provider launch URL", record.provider_launch_url, name),
          copyRow("Patient launch URL", record.patient_launch_url, name),
          copyRow("Redirect URI", record.redirect_uri, name),
          SCOPE_KINDS.map(([kind, label]) => copyRow(label, record.scopes?.[kind], name)),
          copyRow("JWKS URL", record.jwks_url, name),
          copyRow("Provider client id", ids.provider, name),
          copyRow("Patient client id", ids.patient, name),
          copyRow("Backend client id", ids.backend, name)),
        h("div", { class: "actions" },
          h("button", { type: "button", onclick: download, "aria-label": `Download the integration record for ${name} as JSON` }, "Download JSON")));
    };

    replace(container,
      h("p", { class: "lead" }, "Enter these values for each FHIR base URL in Cerner's code console. The launch URLs are this region's own."),
      status,
      endpoints.length
        ? h("div", { class: "records" }, endpoints.map((e, i) => recordCard(e, records[i])))
        : h("p", { class: "empty" }, "No FHIR base URL yet: add one in step 1."));
  },
};
