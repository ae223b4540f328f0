// The job page's "Edit" form: PATCH /jobs/<id> for a queued or running job (its trials
// at once, its time budget, its priority, a random or optuna search's num_samples).

import { api } from "./api.js";
import { detailText, h } from "./dom.js";
import { notify } from "./ui.js";

const PRIORITIES = ["high", "normal", "low"];

// A form for `job`; `onEdited(view)` gets the job's view once an edit is taken.
export function editForm(job, onEdited) {
  const spec = job.spec;
  const sampled = spec.search.algorithm !== "grid";
  const field = (label, input, hint) =>
    h("label", { class: "edit-field" }, label, input, h("span", { class: "hint" }, hint));
  const number = (id, value, step) =>
    h("input", { id, type: "number", min: "1", step, value: value ?? "" });
  const concurrent = number("edit-max-concurrent", spec.max_concurrent_trials, "1");
  const budget = number("edit-time-budget", spec.time_budget_s, "any");
  const samples = number("edit-num-samples", spec.search.num_samples, "1");
  const priority = h(
    "select",
    { id: "edit-priority" },
    PRIORITIES.map((p) => h("option", { value: p, selected: p === job.priority }, p)),
  );
  const errors = h("p", { class: "errors", id: "edit-errors", hidden: true });
  const button = h("button", { type: "submit", id: "edit-save" }, "Save changes");

  const changes = () => {
    const found = {};
    const asked = (input) => (input.value === "" ? null : Number(input.value));
    if (asked(concurrent) !== (spec.max_concurrent_trials ?? null))
      found.max_concurrent_trials = asked(concurrent);
    if (asked(budget) !== (spec.time_budget_s ?? null)) found.time_budget_s = asked(budget);
    if (sampled && asked(samples) !== spec.search.num_samples)
      found.num_samples = asked(samples);
    if (priority.value !== job.priority) found.priority = priority.value;
    return found;
  };

  return h(
    "form",
    {
      id: "edit-form",
      onsubmit: async (event) => {
        event.preventDefault();
        errors.hidden = true;
        const body = changes();
        if (!Object.keys(body).length) {
          errors.textContent = "Nothing changed.";
          errors.hidden = false;
          return;
        }
        button.disabled = true;
        try {
          const view = await api(`/jobs/${job.id}`, { method: "PATCH", body });
          notify(`Job ${job.name || job.id} edited.`, "info");
          onEdited(view);
        } catch (error) {
          errors.textContent = detailText(error);
          errors.hidden = false;
        } finally {
          button.disabled = false;
        }
      },
    },
    h(
      "div",
      { class: "edit-fields" },
      field("Trials at once", concurrent, "raise or lower; empty: no limit of its own"),
      field("Time budget (s)", budget, "from the job's start; it can only grow"),
      sampled ? field("Samples", samples, "random and optuna searches; it can only grow") : null,
      field("Priority", priority, "a queued job moves to that line"),
    ),
    errors,
    h("div", { class: "form-actions" }, button),
  );
}
