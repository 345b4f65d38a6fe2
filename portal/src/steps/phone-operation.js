// Follow a number-generation operation (GET /api/admin/operations/{id} about every second).

const TERMINAL = new Set(["succeeded", "failed"]);

export function describeOperation(op) {
  if (op.status === "failed") return `Generating a number failed: ${op.error || "the provider refused the purchase."}`;
  if (op.status === "succeeded") return `Done: ${op.phone_number} is ready to link.`;
  if (op.step === "purchasing") return `Step 2 of 2: purchasing ${op.phone_number || "the number"}… this can take a few minutes.`;
  return "Step 1 of 2: searching for an available toll-free number…";
}

/** Calls onUpdate(op) on every answer until the operation ends; returns a stop function. */
export function followOperation(api, operation, onUpdate, { intervalMs = 1000 } = {}) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    let op = operation;
    try {
      op = await api.get(`operations/${encodeURIComponent(operation.operation_id)}`);
    } catch (err) {
      op = { ...operation, transientError: err.message }; // keep polling through a blip
    }
    if (stopped) return;
    onUpdate(op);
    if (!TERMINAL.has(op.status)) timer = setTimeout(tick, intervalMs);
  };
  onUpdate(operation);
  if (!TERMINAL.has(operation.status)) timer = setTimeout(tick, intervalMs);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
