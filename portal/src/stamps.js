// Which stamp (region) holds the signed-in tenant: remembered per tenant, else asked of every stamp,
// else the admin picks a region and the tenant is onboarded there.

import { AdminApi, ApiError } from "./api.js";
import { h, liveRegion, replace } from "./dom.js";
import { clearProblems, radioGroup, showProblems } from "./forms.js";

const storageKey = (tenantId) => `vvc.stamp.${tenantId}`;

export function rememberStamp(tenantId, stamp) {
  localStorage.setItem(storageKey(tenantId), stamp.region);
}

export function forgetStamp(tenantId) {
  localStorage.removeItem(storageKey(tenantId));
}

/**
 * Ask the stamps for the tenant. Resolves {stamp, api, tenant} when one knows it, null when
 * every stamp answered 404 (not onboarded), and throws when a stamp could not answer (so
 * the admin is never asked to onboard a second time while the real stamp is down).
 */
export async function findTenantStamp(config, auth) {
  const remembered = localStorage.getItem(storageKey(auth.tenantId));
  const first = config.stamps.find((s) => s.region === remembered);
  if (first) {
    const found = await askStamp(first, auth).catch(() => null);
    if (found?.tenant) return found;
  }
  const answers = await Promise.all(config.stamps.map((stamp) => askStamp(stamp, auth).catch((error) => ({ stamp, error }))));
  const found = answers.find((a) => a.tenant);
  if (found) {
    rememberStamp(auth.tenantId, found.stamp);
    return found;
  }
  const failed = answers.find((a) => a.error);
  if (failed) throw failed.error;
  forgetStamp(auth.tenantId);
  return null;
}

async function askStamp(stamp, auth) {
  const api = new AdminApi(stamp.api_base_url, auth);
  try {
    return { stamp, api, tenant: await api.get("tenant") };
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return { stamp, api, tenant: null };
    if (err instanceof ApiError) throw err;
    throw new Error(`The ${stamp.label || stamp.region} stamp could not be reached.`);
  }
}

/** The region picker; resolves {stamp, api, tenant} once the tenant is onboarded. */
export function pickRegion(container, config, auth) {
  return new Promise((resolve) => {
    const group = radioGroup({
      legend: "Region for your organisation's data",
      name: "region",
      hint: "Visits, settings and phone numbers are stored and processed only in this region. Pick it once; it cannot be moved later.",
      options: config.stamps.map((s) => ({ value: s.region, label: s.label || s.region, detail: ` (${s.region})` })),
    });
    group.addEventListener("change", () => group.setError(null));
    const status = liveRegion();
    const submit = h("button", { type: "submit", class: "primary" }, "Continue");
    const form = h("form", { class: "card", novalidate: true, "aria-labelledby": "region-title" },
      h("h2", { id: "region-title", tabindex: "-1" }, "Pick a region"),
      h("p", {}, "Your organisation is not set up yet. Choose where its data lives."),
      group, h("div", { class: "actions" }, submit), status);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const fields = { region: group };
      clearProblems(fields);
      const region = group.value();
      if (!region) {
        showProblems(fields, [{ field: "region", message: "Pick a region to continue." }]);
        return;
      }
      const stamp = config.stamps.find((s) => s.region === region);
      const api = new AdminApi(stamp.api_base_url, auth);
      submit.disabled = true;
      status.say(`Setting up your organisation in ${stamp.label || region}…`);
      try {
        const tenant = await api.post("tenant", {});
        rememberStamp(auth.tenantId, stamp);
        status.say("");
        resolve({ stamp, api, tenant });
      } catch (err) {
        submit.disabled = false;
        status.say("");
        showProblems(fields, [{ field: "region", message: err.message }]);
      }
    });
    replace(container, form);
    form.querySelector("h2").focus();
  });
}
