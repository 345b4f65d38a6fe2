// The setup wizard: a nav list of step buttons, one panel; focus moves to the step heading.

import { h, liveRegion, replace } from "./dom.js";
import { configurationStep } from "./steps/configuration.js";
import { remindersStep } from "./steps/reminders.js";
import { reviewStep } from "./steps/review.js";
import { smsStep } from "./steps/sms.js";

const STEPS = [configurationStep, smsStep, remindersStep, reviewStep];
const LAST_STEP = "vvc.step";
const FINISHED = "Setup is complete. Come back any time to change these settings.";

export function startWizard(container, ctx) {
  let cleanup = null;
  let shown = 0; // which show() call is current, so a slow step cannot outlive a newer one
  const buttons = new Map();
  const nav = h("nav", { "aria-label": "Setup steps", class: "steps" },
    h("ol", {}, STEPS.map((step, i) => {
      const button = h("button", { type: "button", onclick: () => show(step.id) },
        h("span", { class: "step-number", "aria-hidden": "true" }, String(i + 1)),
        h("span", { class: "visually-hidden" }, `Step ${i + 1}: `), step.title);
      buttons.set(step.id, button);
      return h("li", {}, button);
    })));
  const panel = h("section", { class: "step-panel", "aria-labelledby": "step-heading" });
  replace(container, h("div", { class: "wizard" }, nav, panel));

  async function show(id, { focus = true } = {}) {
    const index = Math.max(0, STEPS.findIndex((s) => s.id === id));
    const step = STEPS[index];
    const mine = ++shown;
    cleanup?.();
    cleanup = null;
    sessionStorage.setItem(LAST_STEP, step.id);
    for (const [stepId, button] of buttons) {
      if (stepId === step.id) button.setAttribute("aria-current", "step");
      else button.removeAttribute("aria-current");
    }
    const heading = h("h2", { id: "step-heading", tabindex: "-1" }, step.title);
    const body = h("div", { class: "step-body", "aria-busy": "true" });
    const next = STEPS[index + 1];
    const finished = liveRegion({ class: "finished" });
    const footer = h("div", { class: "actions step-footer" },
      index > 0 ? h("button", { type: "button", onclick: () => show(STEPS[index - 1].id) }, `Back: ${STEPS[index - 1].title}`) : null,
      next
        ? h("button", { type: "button", class: "primary", onclick: () => show(next.id) }, `Next: ${next.title}`)
        : h("button", { type: "button", class: "primary", onclick: () => finished.say(FINISHED, "ok") }, "Finish"));
    replace(panel, heading, body, footer, finished);
    if (focus) heading.focus();
    try {
      const stop = (await step.render(body, { ...ctx, go: show })) || null;
      if (mine === shown) cleanup = stop;
      else stop?.();
    } catch (err) {
      replace(body, h("p", { class: "error-box", role: "alert" }, `This step could not load: ${err.message}`));
    } finally {
      body.removeAttribute("aria-busy");
    }
  }

  show(sessionStorage.getItem(LAST_STEP) || STEPS[0].id, { focus: false });
}
