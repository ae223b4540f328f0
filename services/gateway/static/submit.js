// #/submit : paste, open or pick a job spec (JSON or YAML), submit it, and read what is
// wrong with it. #/submit?dataset=<id> starts from the seed's grid on that dataset.

import { ApiError, api } from "./api.js";
import { errorBox, h, num } from "./dom.js";
import { EXAMPLES } from "./examples.js";
import { dump, load } from "./vendor/js-yaml.esm.min.mjs";

const FIRST_EXAMPLE = Object.keys(EXAMPLES)[0];
const SEED_EXAMPLE = "seed-grid.json";
// YAML as people write specs: a domain on one line, `lr: {grid: [0.001, 0.003]}`.
const YAML_STYLE = { flowLevel: 2 };

export async function submitPage(root, [datasetId], signal) {
  let format = "json";
  const input = h("textarea", {
    id: "spec-input",
    class: "code",
    rows: 20,
    spellcheck: "false",
    "aria-label": "Job spec",
    "aria-describedby": "submit-errors",
    value: EXAMPLES[FIRST_EXAMPLE],
  });
  const errors = h("ul", { id: "submit-errors", class: "errors", hidden: true });
  const button = h("button", { id: "submit-button", type: "submit" }, "Submit");
  const formatChoice = (value, label) =>
    h(
      "label",
      { class: "radio" },
      h("input", {
        type: "radio",
        name: "spec-format",
        id: `spec-format-${value}`,
        value,
        checked: value === format,
        onchange: () => setFormat(value),
      }),
      label,
    );
  const examples = h(
    "select",
    {
      id: "example-select",
      onchange: () => {
        if (examples.value) input.value = inFormat(JSON.parse(EXAMPLES[examples.value]));
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
    accept: ".json,.yaml,.yml,application/json,application/yaml,text/yaml",
    onchange: async () => {
      const chosen = file.files[0];
      if (!chosen) return;
      showFormat(/\.ya?ml$/i.test(chosen.name) ? "yaml" : "json");
      input.value = await chosen.text();
      examples.value = "";
      clearErrors();
    },
  });
  input.addEventListener("input", () => {
    examples.value = "";
  });

  const inFormat = (spec) =>
    format === "yaml" ? dump(spec, YAML_STYLE) : `${JSON.stringify(spec, null, 2)}\n`;
  const showFormat = (next) => {
    format = next;
    root.querySelector(`#spec-format-${next}`).checked = true;
    input.setAttribute("aria-label", `Job spec as ${next === "yaml" ? "YAML" : "JSON"}`);
  };
  // The spec in the editor, rewritten in the other format when it reads in this one.
  const setFormat = (next) => {
    const parsed = parseSpec(input.value, format);
    showFormat(next);
    clearErrors();
    if (parsed.spec !== undefined) input.value = inFormat(parsed.spec);
  };
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
        const { spec, problem } = parseSpec(input.value, format);
        if (problem) {
          showErrors([{ message: problem }]);
          return;
        }
        button.disabled = true;
        try {
          // Sent as JSON whichever the editor holds: the API takes one format.
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
      h(
        "span",
        { class: "formats", role: "radiogroup", "aria-label": "Format" },
        formatChoice("json", "JSON"),
        formatChoice("yaml", "YAML"),
      ),
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

  const intro = h("div", { id: "submit-dataset" });
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Submit a job")),
    h(
      "p",
      { class: "lead" },
      "A job spec names a dataset and the search space of the network's hyperparameters, ",
      "in JSON or YAML. It is checked in full before the job is queued.",
    ),
    intro,
    form,
  );
  if (datasetId) await startFromDataset(datasetId, intro, input, examples, signal);
}

/** Fill the editor with the seed's grid on an uploaded dataset, and say so above it. */
async function startFromDataset(datasetId, intro, input, examples, signal) {
  const dataset = (await api("/datasets", { signal })).find((d) => d.id === datasetId);
  if (!dataset) {
    intro.append(
      errorBox(["No uploaded dataset ", h("code", {}, datasetId), "; see the ", datasetsLink()]),
    );
    return;
  }
  const spec = seedSpecFor(dataset);
  input.value = `${JSON.stringify(spec, null, 2)}\n`;
  examples.value = "";
  intro.append(
    h(
      "p",
      { class: "note-info" },
      "Starting from the seed's grid (",
      h("code", {}, SEED_EXAMPLE),
      `) on dataset `,
      h("a", { href: `#/datasets/${dataset.id}` }, h("code", {}, dataset.id.slice(0, 12))),
      ` (${num(dataset.rows)} rows, ${dataset.task} of `,
      h("code", {}, dataset.target),
      "). Change what you like before submitting.",
      dataset.problems?.length
        ? h("span", { class: "warn" }, ` The checks found problems with it: ${dataset.problems[0]}`)
        : null,
    ),
  );
}

function datasetsLink() {
  return h("a", { href: "#/datasets" }, "datasets");
}

/**
 * The seed's grid (examples/seed-grid.json) on an uploaded dataset: its search space,
 * scaler and balance, with the dataset's target, and the metric its task is tuned on.
 */
export function seedSpecFor(dataset) {
  const seed = JSON.parse(EXAMPLES[SEED_EXAMPLE]);
  const classification = dataset.task === "classification";
  return {
    name: `${seed.name}-${dataset.id.slice(0, 8)}`,
    dataset: {
      upload: dataset.id,
      target: dataset.target,
      scaler: seed.dataset.scaler,
      // Class-balanced sampling means nothing for a numeric target.
      balance: classification ? seed.dataset.balance : "none",
    },
    task: dataset.task,
    search_space: seed.search_space,
    metric: classification ? seed.metric : "val_loss",
    mode: classification ? seed.mode : "min",
  };
}

/** `{spec}` read from the editor's text, or `{problem}` saying where it does not read. */
export function parseSpec(text, format) {
  let spec;
  try {
    spec = format === "yaml" ? load(text) : JSON.parse(text);
  } catch (error) {
    if (format !== "yaml") return { problem: `Not valid JSON: ${error.message}` };
    const where = error.mark
      ? ` (line ${error.mark.line + 1}, column ${error.mark.column + 1})`
      : "";
    return { problem: `Not valid YAML: ${error.reason ?? error.message}${where}` };
  }
  if (spec === null || typeof spec !== "object" || Array.isArray(spec)) {
    return {
      problem:
        "A job spec is a mapping of fields (dataset, search_space, metric, ...), not a list or a single value.",
    };
  }
  return { spec };
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
