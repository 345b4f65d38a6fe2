// Step 1, configuration information: the tenant's FHIR base URLs; add, change, remove.

import { h, liveRegion, replace } from "../dom.js";
import { endpointForm } from "./endpoint-form.js";

export const configurationStep = {
  id: "configuration",
  title: "Configuration information",
  async render(container, ctx) {
    const status = liveRegion({ class: "step-status" });
    const list = h("div", { class: "endpoint-list" });
    const formSlot = h("div", {});
    let endpoints = [];

    const refresh = async () => {
      endpoints = (await ctx.api.get("endpoints")).endpoints || [];
      drawList();
    };

    const drawList = () => {
      if (!endpoints.length) {
        replace(list, h("p", { class: "empty" }, "No FHIR base URL yet. Add the first one below."));
        return;
      }
      replace(list, h("ul", { class: "cards", "aria-label": "FHIR base URLs" }, endpoints.map((endpoint) => h("li", {}, endpointCard(endpoint)))));
    };

    const endpointCard = (endpoint) => {
      const name = endpoint.display_name || endpoint.base_url;
      const actions = h("div", { class: "actions" });
      const drawActions = () => replace(actions,
        h("button", { type: "button", onclick: () => openForm(endpoint), "aria-label": `Change ${name}` }, "Change"),
        h("button", { type: "button", class: "danger", onclick: confirmRemove, "aria-label": `Remove ${name}` }, "Remove"));
      const confirmRemove = () => {
        const yes = h("button", { type: "button", class: "danger", onclick: remove }, `Yes, remove ${name}`);
        replace(actions, h("span", { class: "confirm" }, "Remove this URL? Launches from it stop working."), yes,
          h("button", { type: "button", onclick: () => { drawActions(); actions.querySelector("button").focus(); } }, "Keep it"));
        yes.focus();
      };
      const remove = async () => {
        try {
          await ctx.api.delete(`endpoints/${encodeURIComponent(endpoint.endpoint_id)}`, endpoint.etag);
          status.say(`Removed ${name}.`, "ok");
          await refresh();
        } catch (err) {
          status.say(`Could not remove ${name}: ${err.message}`, "bad");
          drawActions();
        }
      };
      drawActions();
      return h("article", { class: "card endpoint", "aria-label": name },
        h("h3", {}, name, " ", h("span", { class: `badge ${endpoint.environment}` }, endpoint.environment)),
        h("dl", { class: "facts" },
          h("dt", {}, "FHIR base URL"), h("dd", {}, h("code", {}, endpoint.base_url)),
          endpoint.cerner_tenant_id ? [h("dt", {}, "Cerner tenant"), h("dd", {}, h("code", {}, endpoint.cerner_tenant_id))] : null,
          h("dt", {}, "Departments"), h("dd", {}, (endpoint.location_ids || []).join(", ") || "none"),
          h("dt", {}, "Time zone"), h("dd", {}, endpoint.timezone || "not set"),
          h("dt", {}, "SMS number"), h("dd", {}, endpoint.linked_number || "none")),
        actions);
    };

    const openForm = (endpoint = null) => {
      const form = endpointForm(ctx, {
        endpoint,
        onSaved: async (saved) => {
          status.say(`Saved ${saved.display_name || saved.base_url}. It passed validation.`, "ok");
          await refresh();
          openForm(null);
        },
        onCancel: endpoint ? () => openForm(null) : null,
      });
      replace(formSlot, form);
      if (endpoint) form.querySelector("h3").focus();
    };

    replace(container,
      h("p", { class: "lead" }, "Add each Cerner FHIR R4 base URL the connector serves, in its environment. Every URL is validated before it is saved: https, a public address, an R4 CapabilityStatement and SMART endpoints."),
      status, list, formSlot);
    await refresh();
    openForm(null);
  },
};
