// The stamp-health indicator (GET /api/health of the stamp serving the page).

export async function showStampHealth() {
  const status = document.getElementById("stamp-status");
  const mark = (id, ok) => {
    const el = document.getElementById(id);
    el.textContent = ok ? "reachable" : "unreachable";
    el.className = ok ? "ok" : "bad";
  };
  try {
    const resp = await fetch("api/health", { headers: { Accept: "application/json" } });
    const health = await resp.json();
    document.getElementById("stamp-region").textContent = health.region;
    document.getElementById("stamp-version").textContent = health.version;
    mark("check-tables", health.checks.tables);
    mark("check-queues", health.checks.queues);
    document.getElementById("stamp-facts").hidden = false;
    const ok = health.status === "ok";
    status.textContent = ok ? "The stamp is healthy." : "The stamp is degraded: storage does not answer.";
    status.className = ok ? "ok" : "bad";
  } catch {
    status.textContent = "The stamp's API does not answer.";
    status.className = "bad";
  }
}
