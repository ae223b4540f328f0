// #/datasets, #/datasets/<id> : upload a CSV or Parquet file (with its progress), read a
// dataset's summary (columns with their types, roles, gaps and top categories, classes
// and their balance, the problems the checks found), list and delete uploads, and start
// a job on one.

import { api, upload } from "./api.js";
import { dataTable, detailText, errorBox, h, num, section } from "./dom.js";
import { notify } from "./ui.js";

export async function datasetsPage(root, [selectedId], signal) {
  const file = h("input", {
    id: "dataset-file",
    type: "file",
    accept: ".csv,.tsv,.txt,.parquet,text/csv",
    required: true,
  });
  const target = h("input", {
    id: "dataset-target",
    value: "target",
    required: true,
    maxlength: 256,
    size: 14,
    spellcheck: "false",
  });
  const button = h("button", { id: "upload-button", type: "submit" }, "Upload");
  const progress = h("progress", { id: "upload-progress", max: 1, value: 0, hidden: true });
  const progressText = h("span", { id: "upload-progress-text", class: "muted" });
  const refused = h("div");
  const summary = h("div", { id: "dataset-summary" });
  const body = h("tbody");
  const empty = h(
    "p",
    { class: "empty", hidden: true },
    "No datasets yet: upload a CSV or Parquet file above, or use a builtin one in a job spec.",
  );

  let datasets = [];
  const show = (dataset) => {
    summary.replaceChildren(dataset ? summaryView(dataset) : "");
    for (const row of body.children) {
      row.classList.toggle("selected", row.dataset.datasetId === dataset?.id);
    }
  };
  const refresh = async () => {
    datasets = await api("/datasets", { signal });
    body.replaceChildren(...datasets.map((dataset) => datasetRow(dataset, remove)));
    empty.hidden = datasets.length > 0;
  };
  const remove = async (dataset) => {
    if (!window.confirm(`Delete dataset ${dataset.id}? Jobs that have ended keep their results.`))
      return;
    try {
      await api(`/datasets/${dataset.id}`, { method: "DELETE", signal });
    } catch (error) {
      // A 409 says which job uses it and how to end that job: the user needs it all.
      notify(`Could not delete dataset ${dataset.id.slice(0, 12)}: ${detailText(error)}`);
      return;
    }
    notify(`Deleted dataset ${dataset.id.slice(0, 12)}.`, "info");
    if (location.hash === `#/datasets/${dataset.id}`) location.hash = "#/datasets";
    else await refresh();
  };

  const form = h(
    "form",
    {
      id: "upload-form",
      onsubmit: async (event) => {
        event.preventDefault();
        const chosen = file.files[0];
        if (!chosen) return;
        const content = new FormData();
        content.append("file", chosen, chosen.name);
        refused.replaceChildren();
        button.disabled = true;
        progress.hidden = false;
        progress.value = 0;
        progressText.textContent = `sending ${chosen.name}`;
        try {
          const answer = await upload(
            `/datasets?target=${encodeURIComponent(target.value.trim())}`,
            content,
            {
              signal,
              onProgress: (sent, total) => {
                progress.value = total ? sent / total : 1;
                progressText.textContent = `${bytes(sent)} of ${bytes(total)} sent`;
              },
            },
          );
          progress.value = 1;
          progressText.textContent = `${chosen.name} (${bytes(chosen.size)}) uploaded`;
          file.value = "";
          await refresh();
          show(answer);
          history.replaceState(null, "", `#/datasets/${answer.id}`);
        } catch (error) {
          if (signal.aborted || error?.name === "AbortError") return;
          progress.hidden = true;
          progressText.textContent = "";
          // A 422 names the column or value that makes the file unusable, and the fix.
          refused.replaceChildren(
            errorBox(
              [h("strong", {}, `${chosen.name} was not taken: `), detailText(error)],
              "upload-error",
            ),
          );
        } finally {
          button.disabled = false;
        }
      },
    },
    h(
      "div",
      { class: "toolbar" },
      h("label", {}, "CSV or Parquet file ", file),
      h("label", { title: "The column to predict" }, "Target column ", target),
      button,
    ),
    h("div", { class: "upload-progress" }, progress, progressText),
    h(
      "p",
      { class: "hint" },
      "A header row naming the columns (comma, semicolon, tab or pipe separated), and the ",
      "target column. Text categories, dates, gaps (empty, NA, null, ?) and id columns are ",
      "fine: each column gets a role, shown below once the file is read in full.",
    ),
    refused,
  );

  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Datasets")),
    form,
    summary,
    h("h2", {}, "Uploaded datasets"),
    dataTable(
      "datasets-table",
      ["Dataset", "Rows", "Columns", "Target", "Task", "Classes", "Problems", ""],
      body,
      empty,
    ),
  );

  await refresh();
  if (selectedId) {
    const selected = datasets.find((dataset) => dataset.id === selectedId);
    if (selected) show(selected);
    else summary.append(errorBox(`No uploaded dataset ${selectedId}: the list below has yours.`));
  }
}

/** A table uploaded with ?purpose=scoring: rows for a model to score, no target. */
function forScoring(dataset) {
  return dataset.purpose === "scoring";
}

const SCORING_NOTE =
  "Uploaded to be scored (purpose=scoring): a model's batch job adds its predictions to " +
  "every row (POST /models/{id}/batch, or tunefleet predict MODEL --csv FILE -o OUT). " +
  "A tuning job cannot train on it: upload it again with a target column for that.";

function datasetRow(dataset, remove) {
  const problems = dataset.problems ?? [];
  const scoring = forScoring(dataset);
  return h(
    "tr",
    { dataset: { datasetId: dataset.id } },
    h("td", {}, h("a", { href: `#/datasets/${dataset.id}`, class: "id" }, dataset.id.slice(0, 12))),
    h("td", { class: "num" }, num(dataset.rows)),
    h("td", { class: "num" }, dataset.columns.length),
    h("td", {}, scoring ? h("span", { class: "muted" }, "–") : h("code", {}, dataset.target)),
    h(
      "td",
      {},
      scoring ? h("span", { class: "muted", title: SCORING_NOTE }, "for scoring") : dataset.task,
    ),
    h("td", { class: "num" }, dataset.task === "classification" ? dataset.classes.length : "–"),
    h(
      "td",
      {},
      problems.length
        ? h("span", { class: "badge state-failed", title: problems.join("\n") }, problems.length)
        : h("span", { class: "muted" }, "none"),
    ),
    h(
      "td",
      { class: "actions" },
      scoring
        ? ""
        : h(
            "a",
            { class: "button small secondary start-job", href: startJobHref(dataset) },
            "Start a job",
          ),
      " ",
      h(
        "button",
        { class: "small danger delete-dataset", type: "button", onclick: () => remove(dataset) },
        "Delete",
      ),
    ),
  );
}

function startJobHref(dataset) {
  return `#/submit?dataset=${dataset.id}`;
}

function summaryView(dataset) {
  const types = dataset.column_types ?? {};
  const problems = dataset.problems ?? [];
  const scoring = forScoring(dataset);
  const columns = scoring ? dataset.columns : [...dataset.columns, dataset.target];
  return section(
    ["Dataset ", h("code", { class: "id-title" }, dataset.id)],
    scoring
      ? ""
      : h("a", { class: "button", id: "start-job", href: startJobHref(dataset) }, "Start a job"),
    h(
      "div",
      { class: "cards" },
      h(
        "div",
        { class: "card" },
        h("h3", {}, "Shape"),
        h("div", { class: "big", id: "dataset-rows" }, num(dataset.rows)),
        h("div", { class: "muted" }, "rows"),
        h(
          "dl",
          { class: "kv" },
          h("dt", {}, scoring ? "columns" : "features"),
          h("dd", {}, dataset.columns.length),
          h("dt", {}, "target"),
          h("dd", {}, scoring ? "none" : h("code", {}, dataset.target)),
          h("dt", {}, "task"),
          h("dd", { id: "dataset-task" }, scoring ? "for scoring" : dataset.task),
        ),
      ),
      h(
        "div",
        { class: "card" },
        h("h3", {}, scoring ? "Use" : dataset.task === "classification" ? "Classes" : "Target"),
        scoring
          ? h("p", { id: "dataset-scoring", class: "muted" }, SCORING_NOTE)
          : dataset.task === "classification"
            ? balanceView(dataset)
            : h("p", { class: "muted" }, "A numeric target: the job fits its value (regression)."),
      ),
    ),
    h(
      "div",
      { class: "dataset-columns" },
      h("h3", {}, "Columns"),
      h(
        "table",
        { id: "dataset-columns", class: "data compact" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Column", "Type", "Role", "Gaps", "Top values"].map((title) => h("th", {}, title)),
          ),
        ),
        h(
          "tbody",
          {},
          columns.map((name) => columnRow(name, types[name], dataset)),
        ),
      ),
    ),
    dataset.rows_without_target
      ? h(
          "p",
          { id: "dataset-no-target", class: "muted" },
          `${num(dataset.rows_without_target)} ${
            dataset.rows_without_target === 1 ? "row has" : "rows have"
          } no target and ${dataset.rows_without_target === 1 ? "is" : "are"} left out of training.`,
        )
      : "",
    h(
      "div",
      { id: "dataset-problems" },
      scoring
        ? ""
        : problems.length
        ? errorBox([
            h("strong", {}, "A job with the default splits would fail on it: "),
            h(
              "ul",
              {},
              problems.map((problem) => h("li", {}, problem)),
            ),
          ])
        : h(
            "p",
            { class: "ok-note" },
            "The checks found no problem: a job with the default splits can train on it.",
          ),
    ),
  );
}

function columnRow(name, type, dataset) {
  const target = name === dataset.target;
  const role = target ? "target" : (dataset.roles ?? {})[name];
  const why = (dataset.ignored ?? {})[name];
  const gaps = (dataset.missing ?? {})[name] ?? 0;
  const top = Object.entries((dataset.categories ?? {})[name] ?? {});
  return h(
    "tr",
    { dataset: { column: name } },
    h("td", {}, h("code", {}, name), target ? h("span", { class: "chip" }, "target") : ""),
    h("td", { class: "column-type" }, type ?? "–"),
    h(
      "td",
      { class: `column-role role-${role ?? "none"}`, title: why ?? "" },
      role ?? "–",
      why ? h("div", { class: "muted small" }, why) : "",
    ),
    h("td", { class: "num column-missing" }, gaps ? num(gaps) : h("span", { class: "muted" }, "0")),
    h(
      "td",
      { class: "column-categories small" },
      top.length
        ? top
            .slice(0, 5)
            .map(([value, count]) => `${value} (${num(count)})`)
            .join(", ") + (top.length > 5 ? ", …" : "")
        : "",
    ),
  );
}

/** Each class's rows as a bar, and how far apart the largest and the smallest are. */
function balanceView(dataset) {
  const counts = Object.entries(dataset.class_counts ?? {});
  const total = counts.reduce((sum, [, count]) => sum + count, 0) || 1;
  const largest = Math.max(...counts.map(([, count]) => count));
  const smallest = Math.min(...counts.map(([, count]) => count));
  return [
    h(
      "div",
      { id: "dataset-classes", class: "probabilities" },
      counts.map(([label, count]) =>
        h(
          "div",
          { class: "probability class-count", dataset: { label } },
          h("span", { class: "label", title: label }, label),
          h(
            "div",
            { class: "bar" },
            h("div", { style: `width: ${((100 * count) / largest).toFixed(1)}%` }),
          ),
          h("span", { class: "value" }, `${count} · ${share(count, total)}`),
        ),
      ),
    ),
    h(
      "p",
      { class: "muted small", id: "dataset-balance" },
      smallest === largest
        ? "Balanced: every class has as many rows."
        : `The largest class has ${num(largest / smallest)}× the rows of the smallest; ` +
            "the default balance (weighted_sampler) draws them equally often in training.",
    ),
  ];
}

function share(count, total) {
  const percent = (100 * count) / total;
  return percent > 0 && percent < 0.1 ? "<0.1%" : `${percent.toFixed(1)}%`;
}

function bytes(count) {
  if (count < 1024) return `${count} B`;
  if (count < 1024 ** 2) return `${(count / 1024).toFixed(1)} KiB`;
  return `${(count / 1024 ** 2).toFixed(1)} MiB`;
}
