// #/jobs/<id> : a job's progress, learning curves, parameters against the metric,
// trials and spec; follows the job's events while it runs.

import { api, apiKey, download, followEvents } from "./api.js";
import { lineChart, scatterChart } from "./charts.js";
import {
  CANCELLABLE,
  TERMINAL,
  detailText,
  duration,
  errorBox,
  h,
  keyValues,
  num,
  progressBar,
  runSeconds,
  section,
  stateBadge,
  timeCell,
  tunedParameters,
} from "./dom.js";
import { editForm } from "./job_edit.js";
import { cancelJob, notify } from "./ui.js";

const TOP_TRIALS = 5;
// Trials report every epoch; redrawing the charts more often than this only costs.
const CHART_REFRESH_MS = 3000;

export async function jobPage(root, [jobId], signal) {
  const base = `/jobs/${jobId}`;
  let job = await api(base, { signal });
  const trials = new Map();
  for (const row of await api(`${base}/trials`, { signal })) trials.set(row.trial_id, row);

  const head = h("div", { id: "job-head" });
  const summary = h("div", { class: "cards", id: "job-summary" });
  const failure = h("div");
  const curvesNote = h("span", { class: "muted" });
  const curves = h("div", { id: "curves", class: "charts" });
  const scatterNote = h("span", { class: "muted" });
  const scatter = h("div", { id: "scatter", class: "charts" });
  const table = new TrialsTable();
  const csvPath = `${base}/trials?format=csv`;
  const csv = h(
    "a",
    {
      id: "trials-csv",
      class: "button secondary small",
      href: csvPath,
      download: `trials-${jobId}.csv`,
      onclick: (event) => {
        // A link cannot send the API key; fetch the file with it instead.
        if (!apiKey()) return;
        event.preventDefault();
        download(csvPath, `trials-${jobId}.csv`).catch((error) =>
          notify(`Could not download the trials: ${detailText(error)}`),
        );
      },
    },
    "Download CSV",
  );
  const spec = h("pre", { id: "job-spec", class: "code" });
  const editing = h("div", { id: "job-edit" });

  root.append(
    h("a", { href: "#/", class: "back" }, "← All jobs"),
    head,
    failure,
    summary,
    section("Learning curves", curvesNote, curves),
    section("Parameters", scatterNote, scatter),
    section("Trials", csv, h("div", { class: "table-wrap" }, table.element)),
    editing,
    section("Spec", null, spec),
  );

  const metric = () => job.metric || job.spec.metric;
  const renderJob = () => {
    renderHead(head, job, async () => {
      if (await cancelJob(job)) {
        job = await api(base, { signal });
        renderJob();
      }
    });
    renderSummary(summary, job);
    failure.replaceChildren(
      job.error
        ? errorBox(
            [
              h("strong", {}, `This job ${job.state === "failed" ? "failed" : "stopped"}: `),
              job.error,
            ],
            "job-error",
          )
        : "",
    );
    spec.textContent = JSON.stringify(job.spec, null, 2);
    renderEdit();
  };
  // The form is made anew only when what it shows changes, not on every progress event
  // (which would wipe what the user is typing).
  let editedFor = null;
  const renderEdit = () => {
    const key = CANCELLABLE.has(job.state) ? JSON.stringify([job.state, job.priority, job.spec]) : "";
    if (key === editedFor) return;
    editedFor = key;
    editing.replaceChildren(
      key
        ? section(
            "Edit",
            h("span", { class: "muted" }, "a running job follows within seconds"),
            editForm(job, (view) => {
              job = view;
              renderJob();
            }),
          )
        : "",
    );
  };
  const renderTrials = () => table.render([...trials.values()], job);
  const renderScatter = () => {
    scatterNote.textContent = metric()
      ? `each point is a trial at its best ${metric()}`
      : "the job has not chosen its metric yet";
    drawScatter(scatter, [...trials.values()], job, metric());
  };
  const drawCharts = async () => {
    renderScatter();
    if (!metric()) return;
    const mode = job.mode ?? job.spec.mode ?? "max";
    curvesNote.textContent = `the best ${TOP_TRIALS} trials by ${metric()} (${mode})`;
    const top = (await api(`${base}/trials?sort=metric&limit=${TOP_TRIALS}`, { signal })).filter(
      (row) => row.iterations > 0,
    );
    const histories = await Promise.all(
      top.map((row) => api(`${base}/trials/${row.trial_id}/history`, { signal })),
    );
    drawCurves(curves, top, histories, job, metric());
  };

  renderJob();
  renderTrials();
  await drawCharts();
  if (TERMINAL.has(job.state)) return;

  // While it runs: the run time ticks, events update the page, charts catch up.
  const ticker = setInterval(() => renderRunTime(head, job), 1000);
  signal.addEventListener("abort", () => clearInterval(ticker));
  let chartsDue = null;
  const scheduleCharts = () => {
    chartsDue ??= setTimeout(() => {
      chartsDue = null;
      drawCharts().catch((error) => signal.aborted || console.warn(error));
    }, CHART_REFRESH_MS);
  };
  signal.addEventListener("abort", () => clearTimeout(chartsDue));
  let tableDue = false;
  const onEvent = (kind, data) => {
    if (kind === "job") {
      job = data;
      renderJob();
    } else if (kind === "trial") {
      trials.set(data.trial_id, data);
      if (!tableDue) {
        tableDue = true;
        requestAnimationFrame(() => {
          tableDue = false;
          renderTrials();
        });
      }
      scheduleCharts();
    }
  };
  try {
    const isLast = (kind, data) => kind === "job" && TERMINAL.has(data.state);
    await followEvents(`${base}/events`, onEvent, signal, isLast);
  } catch (error) {
    notify(`Lost the job's live updates: ${detailText(error)}`);
    return;
  }
  if (signal.aborted) return;
  // The stream ended with the job: show its final rows and curves.
  clearInterval(ticker);
  clearTimeout(chartsDue);
  job = await api(base, { signal });
  for (const row of await api(`${base}/trials`, { signal })) trials.set(row.trial_id, row);
  renderJob();
  renderTrials();
  await drawCharts();
}

/** Rows the job split into training, validation and test, and those it left out. */
function rowsNote(job) {
  const left = job.rows_without_target
    ? `; ${job.rows_without_target.toLocaleString()} without a target left out`
    : "";
  return h("span", { id: "job-rows" }, `${job.rows_used.toLocaleString()} rows${left}`);
}

function renderHead(head, job, onCancel) {
  const meta = [
    h("code", { title: "job id" }, job.id),
    `${job.priority} priority`,
    job.task,
    job.metric ? `${job.metric} (${job.mode})` : null,
    ["submitted ", timeCell(job.submitted_at)],
    job.started_at ? ["started ", timeCell(job.started_at)] : null,
    job.attempts > 1 ? `${job.attempts} attempts` : null,
    job.engine ? h("span", { title: "how the trials ran" }, job.engine) : null,
    job.rows_used != null ? rowsNote(job) : null,
  ].filter(Boolean);
  // An ended job's count of running trials is its last, not news.
  const running = TERMINAL.has(job.state) ? 0 : job.trials_running;
  head.replaceChildren(
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, job.name || "unnamed job", " ", stateBadge(job.state)),
      h(
        "div",
        { class: "actions" },
        job.state === "succeeded"
          ? h(
              "a",
              { class: "button", id: "model-link", href: `#/models/${job.id}` },
              "Model and predictions",
            )
          : null,
        CANCELLABLE.has(job.state)
          ? h(
              "button",
              { class: "danger", type: "button", id: "cancel-job", onclick: onCancel },
              "Cancel job",
            )
          : null,
      ),
    ),
    h(
      "p",
      { class: "meta" },
      meta.map((item, i) => [i ? h("span", { class: "sep" }, "·") : null, h("span", {}, item)]),
    ),
    h(
      "div",
      { class: "progress-line" },
      progressBar(job.trials_done, job.trials_total, running),
      h(
        "span",
        {},
        `${job.trials_done} of ${job.trials_total} trials done`,
        running ? ` · ${running} running` : "",
        " · run time ",
        h("span", { class: "run-time" }, duration(runSeconds(job))),
      ),
    ),
  );
}

function renderRunTime(head, job) {
  const slot = head.querySelector(".run-time");
  if (slot) slot.textContent = duration(runSeconds(job));
}

// What a job's stopped_by means, as the page says it.
const STOPPED_BY = {
  target: "a trial reached the stop target",
  no_improvement: "no new best over the trials of its no_improvement rule",
  time_budget: "its time budget ran out",
};

function renderSummary(summary, job) {
  const space = job.spec.search_space ?? {};
  const search = job.spec.search ?? {};
  const best = job.best
    ? [
        h("div", { class: "big" }, num(job.best.value)),
        h("div", { class: "muted" }, `${job.best.metric} · trial ${job.best.trial_id}`),
        job.stopped_by
          ? h("p", { class: "muted" }, `Ended early: ${STOPPED_BY[job.stopped_by] ?? job.stopped_by}`)
          : null,
        keyValues(job.best.config, "best-config"),
      ]
    : h("p", { class: "muted" }, "No trial has reported yet.");
  const source = job.spec.dataset.builtin
    ? `builtin ${job.spec.dataset.builtin}`
    : `upload ${job.spec.dataset.upload}`;
  summary.replaceChildren(
    card("Best trial", best),
    card(
      "Test set",
      job.test_metrics
        ? keyValues(job.test_metrics, "test-metrics")
        : h("p", { class: "muted" }, "Measured on the held-out rows once the job succeeds."),
    ),
    card(
      "Search",
      h(
        "dl",
        { class: "kv" },
        h("dt", {}, "dataset"),
        h("dd", {}, source),
        h("dt", {}, "algorithm"),
        h("dd", {}, search.algorithm ?? "–"),
        h("dt", {}, "scheduler"),
        h("dd", {}, job.spec.scheduler?.type ?? "fifo"),
        h("dt", {}, "tuned"),
        h("dd", {}, tunedParameters(job.spec).join(", ") || "nothing (one configuration)"),
        h("dt", {}, "epochs"),
        h("dd", {}, typeof space.epochs === "object" ? JSON.stringify(space.epochs) : space.epochs),
      ),
    ),
  );
}

function card(title, ...content) {
  return h("div", { class: "card" }, h("h3", {}, title), ...content);
}

/** A short name for a trial in a legend: its id's tail and its tuned values. */
function trialLabel(row, tuned) {
  const values = tuned
    .filter((name) => row.config?.[name] !== undefined)
    .map((name) => `${name}=${num(row.config[name])}`);
  return [row.trial_id, ...values].join(" ");
}

function drawCurves(container, top, histories, job, metric) {
  container.replaceChildren();
  if (!top.length) {
    container.append(h("p", { class: "empty" }, "No trial has finished an epoch yet."));
    return;
  }
  const tuned = tunedParameters(job.spec);
  // The metric, and the validation loss beside it (the training loss when the metric is it).
  const second = metric === "val_loss" ? "training_loss" : "val_loss";
  for (const name of [metric, second]) {
    lineChart(container, {
      title: name,
      xLabel: "epoch",
      yLabel: name,
      series: top.map((row, i) => ({
        label: trialLabel(row, tuned),
        points: histories[i].map((epoch) => [epoch.training_iteration, epoch[name]]),
      })),
    });
  }
}

function drawScatter(container, rows, job, metric) {
  container.replaceChildren();
  const tuned = tunedParameters(job.spec);
  if (!tuned.length) {
    container.append(
      h("p", { class: "empty" }, "Every parameter is a constant in this job's search space."),
    );
    return;
  }
  if (!metric) return;
  let drawn = 0;
  for (const name of tuned) {
    const points = rows
      .map((row) => [row.config?.[name], row.best_metrics?.[metric]])
      .filter(([x, y]) => typeof x === "number" && typeof y === "number");
    if (!points.length) continue;
    scatterChart(container, {
      title: name,
      xLabel: name,
      yLabel: metric,
      points,
      ...parameterAxis(job.spec.search_space[name]),
    });
    drawn += 1;
  }
  if (!drawn) container.append(h("p", { class: "empty" }, "No trial has reported yet."));
}

/** How a parameter's axis is laid out, from its domain: a grid's or a choice's values
 * as categories, a loguniform range on a log scale, other ranges as they were searched. */
function parameterAxis(domain) {
  if ("grid" in domain || "choice" in domain) return { axis: "category" };
  if ("loguniform" in domain) return { axis: "log", bounds: domain.loguniform };
  const range = domain.uniform ?? domain.quniform ?? domain.randint;
  return { axis: "linear", bounds: range ? range.slice(0, 2) : undefined };
}

/** The trials as a table that sorts by the column whose header is clicked. */
class TrialsTable {
  constructor() {
    this.head = h("thead");
    this.body = h("tbody");
    this.element = h("table", { id: "trials-table", class: "data" }, this.head, this.body);
    this.sort = null; // {key, descending}
    this.rows = [];
    this.job = null;
  }

  columns(rows, job) {
    const metric = job.metric || job.spec.metric;
    const lastMetrics = [...new Set(rows.flatMap((row) => Object.keys(row.metrics ?? {})))];
    // The job's metric first, then validation before training metrics.
    const rank = (name) => (name === metric ? 0 : name.startsWith("val_") ? 1 : 2);
    lastMetrics.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
    const columns = [
      {
        key: "trial_id",
        label: "trial",
        get: (row) => row.trial_id,
        cell: (v) => h("code", {}, v),
      },
      { key: "state", label: "state", get: (row) => row.state, cell: (v, row) => trialState(row) },
      ...tunedParameters(job.spec).map((name) => ({
        key: `config/${name}`,
        label: name,
        get: (row) => row.config?.[name],
        numeric: true,
      })),
    ];
    if (metric) {
      columns.push({
        key: `best/${metric}`,
        label: `best ${metric}`,
        get: (row) => row.best_metrics?.[metric],
        numeric: true,
        strong: true,
      });
    }
    for (const name of lastMetrics) {
      columns.push({
        key: `last/${name}`,
        label: name,
        get: (row) => row.metrics?.[name],
        numeric: true,
      });
    }
    columns.push(
      { key: "iterations", label: "epochs", get: (row) => row.iterations, numeric: true },
      {
        key: "time_total_s",
        label: "time",
        get: (row) => row.time_total_s,
        numeric: true,
        cell: (v) => duration(v),
      },
      { key: "device", label: "device", get: (row) => row.device },
    );
    return columns;
  }

  render(rows, job) {
    this.rows = rows;
    this.job = job;
    const metric = job.metric || job.spec.metric;
    this.sort ??= metric
      ? { key: `best/${metric}`, descending: (job.mode || job.spec.mode || "max") === "max" }
      : { key: "trial_id", descending: false };
    const columns = this.columns(rows, job);
    const column = columns.find((c) => c.key === this.sort.key) ?? columns[0];
    const sign = this.sort.descending ? -1 : 1;
    const sorted = [...rows].sort((a, b) => compare(column.get(a), column.get(b), sign));
    this.head.replaceChildren(
      h(
        "tr",
        {},
        columns.map((c) =>
          h(
            "th",
            {
              class: `sortable${c.numeric ? " num" : ""}`,
              dataset: { key: c.key },
              "aria-sort":
                c.key === column.key ? (this.sort.descending ? "descending" : "ascending") : "none",
              title: "Sort by this column",
              onclick: () => this.sortBy(c.key),
            },
            c.label,
            h(
              "span",
              { class: "arrow" },
              c.key === column.key ? (this.sort.descending ? "▼" : "▲") : "",
            ),
          ),
        ),
      ),
    );
    this.body.replaceChildren(
      ...sorted.map((row) =>
        h(
          "tr",
          {
            dataset: { trialId: row.trial_id },
            class: job.best?.trial_id === row.trial_id ? "best" : null,
          },
          columns.map((c) => {
            const value = c.get(row);
            const content = c.cell ? c.cell(value, row) : c.numeric ? num(value) : (value ?? "–");
            return h(
              "td",
              { class: c.numeric ? "num" : null },
              c.strong ? h("strong", {}, content) : content,
            );
          }),
        ),
      ),
    );
    if (!rows.length) {
      this.body.append(
        h(
          "tr",
          {},
          h("td", { colspan: columns.length, class: "empty" }, "No trial has started yet."),
        ),
      );
    }
  }

  sortBy(key) {
    this.sort =
      this.sort?.key === key
        ? { key, descending: !this.sort.descending }
        : { key, descending: false };
    this.render(this.rows, this.job);
  }
}

function trialState(row) {
  // Tune's states are upper case (TERMINATED); they read better as the job's are.
  const state = row.state.toLowerCase();
  const label = row.early_stopped ? `${state} (stopped early)` : state;
  return h(
    "span",
    { class: `trial-state trial-${state}`, title: row.error ?? null },
    label,
    row.error ? " ⚠" : "",
    // Carried over by the spec's warm_start: it ran in that job, not this one.
    row.carried_from ? carriedFrom(row.carried_from) : "",
  );
}

function carriedFrom(jobId) {
  const link = h("a", { href: `#/jobs/${jobId}` }, jobId.slice(0, 8));
  return [" (carried over from ", link, ")"];
}

/** Missing values last whichever the direction; numbers as numbers. */
function compare(a, b, sign) {
  const missingA = a === null || a === undefined;
  const missingB = b === null || b === undefined;
  if (missingA || missingB) return missingA - missingB;
  if (typeof a === "number" && typeof b === "number") return sign * (a - b);
  return sign * String(a).localeCompare(String(b), undefined, { numeric: true });
}
