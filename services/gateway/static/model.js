// #/models/<id or alias> : a registered model, what it expects, and a form to predict.

import { api } from "./api.js";
import { detailText, errorBox, h, keyValues, num, timeCell } from "./dom.js";

const MODEL_ID = /^[0-9a-f]{32}$/;
// A long list of probabilities says little more than its first few.
const CLASSES_SHOWN = 5;

export async function modelPage(root, [ref], signal) {
  const aliases = await api("/models/aliases", { signal });
  const modelId = MODEL_ID.test(ref) ? ref : aliases[ref];
  if (!modelId) {
    root.append(errorBox(`No model or alias "${ref}".`, "model-error"));
    return;
  }
  const model = await api(`/models/${modelId}`, { signal });
  const pointing = Object.entries(aliases)
    .filter(([, target]) => target === model.id)
    .map(([alias]) => alias)
    .sort();

  const input = h("textarea", {
    id: "predict-input",
    class: "code",
    rows: 12,
    spellcheck: "false",
    "aria-label": "Instances as JSON",
    value: JSON.stringify(exampleRow(model), null, 2),
  });
  const result = h("div", { id: "predict-result", "aria-live": "polite" });
  const button = h("button", { id: "predict-button", type: "submit" }, "Predict");
  const form = h(
    "form",
    {
      id: "predict-form",
      onsubmit: async (event) => {
        event.preventDefault();
        button.disabled = true;
        try {
          await predict(model, input.value, result, signal);
        } finally {
          button.disabled = false;
        }
      },
    },
    h(
      "p",
      { class: "hint" },
      "One instance as a ",
      h("code", {}, "{column: value}"),
      " object, a list of them, or ",
      h("code", {}, '{"instances": [...]}'),
      ". Numbers for numeric columns, text for categories (one never seen is fine), ISO ",
      "dates (2024-03-01), and null for a gap. Columns the model ignores may be left out.",
    ),
    input,
    h("div", { class: "form-actions" }, button),
  );

  root.append(
    h("a", { href: "#/", class: "back" }, "← All jobs"),
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Model ", h("code", { class: "id-title" }, model.id)),
    ),
    h(
      "p",
      { class: "meta" },
      h(
        "span",
        {},
        "made by job ",
        h("a", { href: `#/jobs/${model.job_id}` }, model.job_id.slice(0, 12)),
      ),
      h("span", { class: "sep" }, "·"),
      h("span", {}, model.task),
      h("span", { class: "sep" }, "·"),
      h("span", {}, "predicts ", h("code", {}, model.target)),
      h("span", { class: "sep" }, "·"),
      h("span", {}, "registered ", timeCell(model.created_at)),
    ),
    h(
      "div",
      { class: "cards", id: "model-metrics" },
      card(
        "Validation",
        h("div", { class: "big", id: "validation-value" }, num(model.validation_value)),
        h("div", { class: "muted" }, `${model.metric}, the job's best (${model.mode})`),
      ),
      card("Test set", keyValues(model.test_metrics, "test-metrics")),
      card("Hyperparameters", keyValues(model.config, "model-config")),
      card(
        "Aliases",
        pointing.length
          ? h(
              "div",
              { id: "model-aliases", class: "chips" },
              pointing.map((a) => h("span", { class: "chip alias" }, a)),
            )
          : h("p", { class: "muted", id: "model-aliases" }, "No alias points at this model."),
      ),
    ),
    h(
      "section",
      {},
      h(
        "div",
        { class: "section-head" },
        h("h2", {}, "Features"),
        h(
          "span",
          { class: "muted" },
          `${model.feature_names.length} columns of the table, in its order, with their roles`,
        ),
      ),
      h(
        "div",
        { id: "model-features", class: "chips" },
        model.feature_names.map((name) =>
          h(
            "code",
            { class: `chip role-${roleOf(model, name)}`, title: roleOf(model, name) },
            name,
            h("span", { class: "muted small" }, ` ${roleOf(model, name)}`),
          ),
        ),
      ),
    ),
    model.classes.length
      ? h(
          "section",
          {},
          h(
            "div",
            { class: "section-head" },
            h("h2", {}, "Classes"),
            h("span", { class: "muted" }, String(model.classes.length)),
          ),
          h(
            "div",
            { id: "model-classes", class: "chips" },
            model.classes.map((name) => h("span", { class: "chip" }, String(name))),
          ),
        )
      : null,
    h(
      "section",
      {},
      h("div", { class: "section-head" }, h("h2", {}, "Predict")),
      h("div", { class: "predict" }, form, result),
    ),
    // A server path: the API answers it to admins only (null for a tenant's key).
    model.checkpoint_uri
      ? h(
          "p",
          { class: "muted small", id: "model-checkpoint" },
          "Checkpoint: ",
          h("code", {}, model.checkpoint_uri),
        )
      : null,
  );
}

function card(title, ...content) {
  return h("div", { class: "card" }, h("h3", {}, title), ...content);
}

/** The textarea's JSON as the request's instances. */
function instancesOf(text) {
  const value = JSON.parse(text);
  if (Array.isArray(value)) return value;
  if (value && typeof value === "object" && Array.isArray(value.instances)) return value.instances;
  if (value && typeof value === "object") return [value];
  throw new Error('expected an object, a list of objects, or {"instances": [...]}');
}

async function predict(model, text, result, signal) {
  let instances;
  try {
    instances = instancesOf(text);
  } catch (error) {
    result.replaceChildren(errorBox(`Not valid input: ${error.message}`, "predict-error"));
    return;
  }
  result.replaceChildren(h("p", { class: "muted" }, "Predicting…"));
  let answer;
  try {
    answer = await api(`/models/${model.id}/predict`, {
      method: "POST",
      body: { instances },
      signal,
    });
  } catch (error) {
    result.replaceChildren(errorBox(detailText(error), "predict-error"));
    return;
  }
  const classes = answer.model.classes;
  result.replaceChildren(
    h(
      "table",
      { class: "data predictions" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", {}, "#"),
          h("th", {}, "prediction"),
          answer.probabilities ? h("th", {}, "probabilities") : null,
        ),
      ),
      h(
        "tbody",
        {},
        answer.predictions.map((prediction, i) =>
          h(
            "tr",
            {},
            h("td", { class: "muted" }, String(i + 1)),
            h(
              "td",
              {},
              h(
                "span",
                { class: "prediction" },
                typeof prediction === "number" ? num(prediction) : String(prediction),
              ),
            ),
            answer.probabilities
              ? h("td", {}, probabilities(classes, answer.probabilities[i]))
              : null,
          ),
        ),
      ),
    ),
  );
}

function probabilities(classes, values) {
  const ranked = values
    .map((p, i) => [classes[i], p])
    .sort((a, b) => b[1] - a[1])
    .slice(0, CLASSES_SHOWN);
  return h(
    "div",
    { class: "probabilities" },
    ranked.map(([label, p]) =>
      h(
        "div",
        { class: "probability" },
        h("span", { class: "label" }, String(label)),
        h("div", { class: "bar" }, h("div", { style: `width: ${(100 * p).toFixed(1)}%` })),
        h("span", { class: "value" }, `${(100 * p).toFixed(1)}%`),
      ),
    ),
  );
}

function roleOf(model, name) {
  return (model.columns ?? {})[name] ?? "numeric";
}

/** A row to start from: 0 for numbers, a date for dates, null (a gap) for categories. */
function exampleRow(model) {
  const example = { numeric: 0, datetime: "2024-01-01", categorical: null };
  return Object.fromEntries(
    model.feature_names
      .filter((name) => roleOf(model, name) !== "ignore")
      .map((name) => [name, roleOf(model, name) in example ? example[roleOf(model, name)] : 0]),
  );
}
