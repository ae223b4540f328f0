// #/submit : paste, upload or pick a job spec, submit it, and read what is wrong with it.

import { ApiError, api } from "./api.js";
import { h } from "./dom.js";
import { EXAMPLES } from "./examples.js";

const FIRST_EXAMPLE = Object.keys(EXAMPLES)[0];

export async function submitPage(root, _params, signal) {
  const input = h("textarea", {
    id: "spec-input",
    class: "code",
    rows: 20,
    spellcheck: "false",
    "aria-label": "Job spec as JSON",
    "aria-describedby": "submit-errors",
    value: EXAMPLES[FIRST_EXAMPLE],
  });
  const errors = h("ul", { id: "submit-errors", class: "errors", hidden: true });
  const button = h("button", { id: "submit-button", type: "submit" }, "Submit");
  const examples = h(
    "select",
    {
      id: "example-select",
      onchange: () => {
        if (examples.value) input.value = EXAMPLES[examples.value];
        clearErrors();
      },
    },
    h("option", { value: "" }, "(your own)"),
    Object.keys(EXAMPLES).map((name) =>
      h("option", { value: name, selected: name === FIRST_EXAMPLE }, name),
    ),
  );
  const file = h("input", {
    id: "spec-file",
    type: "file",
    accept: ".json,application/json",
    onchange: async () => {
      const chosen = file.files[0];
      if (!chosen) return;
      input.value = await chosen.text();
      examples.value = "";
      clearErrors();
      if (/\.ya?ml$/i.test(chosen.name)) {
        showErrors([
          {
            message:
              "YAML is not read here: convert it to JSON, or submit it with `tunefleet submit`.",
          },
        ]);
      }
    },
  });
  input.addEventListener("input", () => {
    examples.value = "";
  });

  const clearErrors = () => {
    errors.replaceChildren();
    errors.hidden = true;
    input.classList.remove("invalid");
  };
  const showErrors = (items) => {
    errors.replaceChildren(
      ...items.map(({ field, message, given }) =>
        h(
          "li",
          { dataset: { field: field ?? "" } },
          field ? [h("code", { class: "loc" }, field), ": "] : null,
          message,
          given !== undefined ? h("span", { class: "muted" }, ` (given: ${given})`) : null,
        ),
      ),
    );
    errors.hidden = false;
    input.classList.add("invalid");
  };

  const form = h(
    "form",
    {
      id: "submit-form",
      onsubmit: async (event) => {
        event.preventDefault();
        clearErrors();
        let spec;
        try {
          spec = JSON.parse(input.value);
        } catch (error) {
          showErrors([{ message: `Not valid JSON: ${error.message}` }]);
          return;
        }
        button.disabled = true;
        try {
          const accepted = await api("/jobs", { method: "POST", body: spec, signal });
          location.hash = `#/jobs/${accepted.id}`;
        } catch (error) {
          showErrors(problems(spec, error));
        } finally {
          button.disabled = false;
        }
      },
    },
    h(
      "div",
      { class: "toolbar" },
      h("label", {}, "Example ", examples),
      h("label", {}, "Or open a file ", file),
    ),
    input,
    errors,
    h(
      "div",
      { class: "form-actions" },
      button,
      h(
        "span",
        { class: "muted" },
        "Fields: ",
        h(
          "a",
          { href: "/docs#/jobs/submit_job_jobs_post", target: "_blank", rel: "noopener" },
          "JobSpec in the API docs",
        ),
      ),
    ),
  );

  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Submit a job")),
    h(
      "p",
      { class: "lead" },
      "A job spec names a dataset and the search space of the network's hyperparameters. ",
      "It is checked in full before the job is queued.",
    ),
    form,
  );
}

/** What went wrong, each with the spec field it concerns where the API names one. */
function problems(spec, error) {
  if (!(error instanceof ApiError)) return [{ message: String(error.message ?? error) }];
  if (!Array.isArray(error.detail)) return [{ message: String(error.detail) }];
  return error.detail.map((item) => ({
    field: fieldPath(spec, item.loc ?? []),
    message: item.msg ?? JSON.stringify(item),
    given:
      item.input !== null && typeof item.input !== "object"
        ? JSON.stringify(item.input)
        : undefined,
  }));
}

/**
 * The spec field an error's `loc` points at, as `search_space.lr.grid[1]`.
 *
 * pydantic's loc also names the member of a union it tried (`constant`, or `grid`
 * twice for a grid's list); those steps are not keys of the spec and are left out.
 */
export function fieldPath(spec, loc) {
  const steps = loc[0] === "body" ? loc.slice(1) : loc;
  const path = [];
  let value = spec;
  steps.forEach((step, i) => {
    const isList = Array.isArray(value);
    if (isList && Number.isInteger(step) && step < value.length) {
      path.push(`[${step}]`);
      value = value[step];
    } else if (!isList && value !== null && typeof value === "object" && step in value) {
      path.push(path.length ? `.${step}` : step);
      value = value[step];
    } else if (i === steps.length - 1 && !isList && value !== null && typeof value === "object") {
      path.push(path.length ? `.${step}` : step); // a field that is missing
    }
  });
  return path.join("") || null;
}
