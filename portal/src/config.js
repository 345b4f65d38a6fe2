// The portal's configuration, served anonymously by the stamp that serves the page.

export async function loadPortalConfig() {
  const resp = await fetch("api/portal-config", { headers: { Accept: "application/json" } });
  if (!resp.ok) throw new Error(`portal-config answered ${resp.status}`);
  const config = await resp.json();
  if (!config.msal || !Array.isArray(config.stamps) || config.stamps.length === 0) {
    throw new Error("portal-config lacks msal settings or stamps");
  }
  config.stamps = config.stamps.map((stamp) => ({
    ...stamp,
    api_base_url: String(stamp.api_base_url || "").replace(/\/+$/, ""),
  }));
  return config;
}
