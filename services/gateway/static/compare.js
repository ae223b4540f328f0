// #/compare?jobs=<id>,<id>,... : jobs side by side: each one's best trial (config and
// metrics) in one table, and the best trials' learning curves on one chart.

import { api } from "./api.js";
import { lineChart } from "./charts.js";
import { errorBox, h, num, section, stateBadge } from "./dom.js";

export async function comparePage(root, [idList], signal) {
  const ids = [...new Set(idList.split(",").filter(Boolean))];
  root.append(
    h("a", { href: "#/", class: "back" }, "← All jobs"),
    h("div", { class: "page-head" }, h("h1", {}, `Compare ${ids.length} jobs`)),
  );
  if (ids.length < 2) {
    root.append(errorBox("Pick two or more jobs on the jobs list to compare them."));
    return;
  }
  const jobs = await Promise.all(ids.map((id) => bestOf(id, signal)));
  const table = h("div", { class: "table-wrap" }, compareTable(jobs));
  const curves = h("div", { id: "compare-curves", class: "charts" });
  root.append(
    section("Best trials", note("each job's best trial by its own metric"), table),
    section("Learning curves", note("the best trial of each job, per epoch"), curves),
  );
  drawCurves(curves, jobs);
}

/** A job, its best trial's row and that trial's metrics per epoch (none before it has one). */
async function bestOf(id, signal) {
  const job = await api(`/jobs/${id}`, { signal });
  const [best] = await api(`/jobs/${id}/trials?sort=metric&limit=1`, { signal });
  const history =
    best && best.iterations > 0
      ? await api(`/jobs/${id}/trials/${best.trial_id}/history`, { signal })
      : [];
  return { job, best: best?.iterations > 0 ? best : null, history };
}

function note(text) {
  return h("span", { class: "muted" }, text);
}

function jobName(job) {
  return job.name || `job ${job.id.slice(0, 8)}`;
}

function compareTable(jobs) {
  const union = (pick) => [...new Set(jobs.flatMap((entry) => Object.keys(pick(entry) ?? {})))];
  const configKeys = union((entry) => entry.best?.config);
  const metricKeys = union((entry) => entry.best?.best_metrics).sort(byKind);
  const testKeys = union((entry) => entry.job.test_metrics);
  const row = (label, cells, { kind = "", key = "" } = {}) =>
    h(
      "tr",
      { dataset: { kind, key } },
      h("th", { scope: "row" }, label),
      cells.map((cell) => h("td", {}, cell)),
    );
  const value = (number, better) =>
    h(
      "span",
      { class: better ? "better" : null, title: better ? "the best of these" : null },
      num(number),
    );
  const metricRow = (kind, key, read) => {
    const values = jobs.map(read);
    const winner = bestIndex(values, key);
    return row(
      key,
      values.map((v, i) => (v === undefined ? "–" : value(v, i === winner))),
      { kind, key },
    );
  };
  return h(
    "table",
    { id: "compare-table", class: "data compare" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", {}, ""),
        jobs.map(({ job }) =>
          h(
            "th",
            { dataset: { jobId: job.id } },
            h("a", { href: `#/jobs/${job.id}`, class: "job-name" }, jobName(job)),
            " ",
            stateBadge(job.state),
            h("div", { class: "id" }, job.id.slice(0, 12)),
          ),
        ),
      ),
    ),
    h(
      "tbody",
      {},
      row(
        "dataset",
        jobs.map(({ job }) =>
          job.spec.dataset.builtin
            ? `builtin ${job.spec.dataset.builtin}`
            : `upload ${job.spec.dataset.upload.slice(0, 12)}`,
        ),
      ),
      row(
        "metric",
        jobs.map(({ job }) => (job.metric ? `${job.metric} (${job.mode})` : "–")),
      ),
      row(
        "best trial",
        jobs.map(({ best }) => (best ? h("code", {}, best.trial_id) : "no trial has reported")),
      ),
      row(
        "trials done",
        jobs.map(({ job }) => `${job.trials_done} of ${job.trials_total}`),
      ),
      h("tr", { class: "group" }, h("th", { colspan: jobs.length + 1 }, "config")),
      configKeys.map((key) =>
        row(
          key,
          jobs.map(({ best }) => num(best?.config?.[key])),
          { kind: "config", key },
        ),
      ),
      h("tr", { class: "group" }, h("th", { colspan: jobs.length + 1 }, "best metrics")),
      metricKeys.map((key) => metricRow("metric", key, ({ best }) => best?.best_metrics?.[key])),
      testKeys.length
        ? h("tr", { class: "group" }, h("th", { colspan: jobs.length + 1 }, "test set"))
        : null,
      testKeys.map((key) => metricRow("test", key, ({ job }) => job.test_metrics?.[key])),
    ),
  );
}

/** Validation metrics first, then training, then the rest. */
function byKind(a, b) {
  const rank = (name) => (name.startsWith("val_") ? 0 : name.startsWith("training_") ? 1 : 2);
  return rank(a) - rank(b) || a.localeCompare(b);
}

/** Which of the values is best for a metric of this name (losses and RMSE low); -1 if
 * fewer than two jobs have it. */
function bestIndex(values, name) {
  const present = values.filter((v) => typeof v === "number");
  if (present.length < 2) return -1;
  const lower = /loss|rmse/.test(name);
  const best = lower ? Math.min(...present) : Math.max(...present);
  return values.indexOf(best);
}

/** One chart per metric the jobs are tuned on (one, when they share it), then val_loss. */
function drawCurves(container, jobs) {
  const withCurves = jobs.filter((entry) => entry.history.length);
  if (!withCurves.length) {
    container.append(h("p", { class: "empty" }, "No best trial has finished an epoch yet."));
    return;
  }
  const metrics = [...new Set(withCurves.map(({ job }) => job.metric).filter(Boolean))];
  for (const name of [...metrics, ...(metrics.includes("val_loss") ? [] : ["val_loss"])]) {
    const series = withCurves
      .filter(({ history }) => history.some((epoch) => epoch[name] !== undefined))
      .map(({ job, best, history }) => ({
        label: `${jobName(job)} (${best.trial_id})`,
        points: history.map((epoch) => [epoch.training_iteration, epoch[name]]),
      }));
    if (series.length) lineChart(container, { title: name, xLabel: "epoch", yLabel: name, series });
  }
}
