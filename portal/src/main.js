// The admin portal: stamp health, sign-in, the tenant's stamp, then the setup wizard.

import { ApiError } from "./api.js";
import { Auth } from "./auth.js";
import { loadPortalConfig } from "./config.js";
import { h, replace } from "./dom.js";
import { showStampHealth } from "./health.js";
import { findTenantStamp, pickRegion } from "./stamps.js";
import { startWizard } from "./wizard.js";

const app = document.getElementById("app");

function message(title, text, ...actions) {
  const heading = h("h2", { tabindex: "-1" }, title);
  replace(app, h("section", { class: "card" }, heading, h("p", {}, text), actions.length ? h("div", { class: "actions" }, actions) : null));
  return heading;
}

function showSignIn(auth) {
  const button = h("button", { type: "button", class: "primary", onclick: () => auth.signIn() }, "Sign in");
  message("Set up the connector",
    "Sign in with a Microsoft 365 administrator account of your organisation to add FHIR base URLs, switch on SMS and get the records for Cerner's code console.",
    button);
}

function showSession(auth) {
  const account = auth.account;
  document.getElementById("session-user").textContent = account.name || account.username;
  document.getElementById("sign-out").onclick = () => auth.signOut();
  document.getElementById("session").hidden = false;
}

function explain(err, auth) {
  const signOut = h("button", { type: "button", onclick: () => auth.signOut() }, "Sign out");
  const retry = h("button", { type: "button", class: "primary", onclick: () => window.location.reload() }, "Try again");
  if (err instanceof ApiError && err.status === 403) {
    return message("Not an administrator", "This account cannot change the connector: ask a Global Administrator of your organisation, or one with the connector's admin role.", signOut);
  }
  return message("Something went wrong", err.message, retry, signOut);
}

async function boot() {
  showStampHealth();
  let config;
  try {
    config = await loadPortalConfig();
  } catch {
    message("Admin sign-in is not available", "This stamp's admin API did not answer with its portal configuration.");
    return;
  }
  let auth;
  try {
    auth = await Auth.create(config.msal);
  } catch (err) {
    message("Sign-in did not finish", err.message || String(err),
      h("button", { type: "button", class: "primary", onclick: () => { sessionStorage.clear(); window.location.replace(window.location.pathname); } }, "Start again"));
    return;
  }
  if (!auth.account) {
    showSignIn(auth);
    return;
  }
  showSession(auth);
  replace(app, h("p", { role: "status" }, "Finding your organisation's region…"));
  try {
    const found = (await findTenantStamp(config, auth)) || (await pickRegion(app, config, auth));
    const region = document.getElementById("tenant-region");
    region.textContent = found.stamp.label || found.stamp.region;
    region.parentElement.hidden = false;
    startWizard(app, { api: found.api, stamp: found.stamp, auth });
  } catch (err) {
    explain(err, auth);
  }
}

boot();
