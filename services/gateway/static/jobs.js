// #/ : every job with its state and progress, and the registered models; polled. Jobs
// ticked in the list are compared on #/compare.

import { api, sleep } from "./api.js";
import {
  CANCELLABLE,
  TERMINAL,
  dataTable,
  detailText,
  duration,
  h,
  num,
  progressBar,
  runSeconds,
  stateBadge,
  timeCell,
} from "./dom.js";
import { cancelJob, notify } from "./ui.js";

const POLL_MS = 2000;

export async function jobsPage(root, _params, signal) {
  const jobsBody = h("tbody");
  // Ticked jobs, kept across refreshes (each one redraws the rows).
  const picked = new Set();
  const compare = h(
    "a",
    { id: "compare-button", class: "button secondary disabled", "aria-disabled": "true" },
    "Compare",
  );
  const showPicked = () => {
    const enough = picked.size >= 2;
    compare.classList.toggle("disabled", !enough);
    compare.setAttribute("aria-disabled", String(!enough));
    compare.textContent = picked.size ? `Compare ${picked.size} jobs` : "Compare";
    compare.title = enough ? "" : "Tick two or more jobs to compare them";
    if (enough) compare.href = `#/compare?jobs=${[...picked].join(",")}`;
    else compare.removeAttribute("href");
  };
  const toggle = (jobId, on) => {
    if (on) picked.add(jobId);
    else picked.delete(jobId);
    showPicked();
  };
  showPicked();
  const modelsBody = h("tbody");
  const jobsEmpty = h(
    "p",
    { class: "empty", hidden: true },
    "No jobs yet. ",
    h("a", { href: "#/submit" }, "Submit one"),
    ".",
  );
  const modelsEmpty = h(
    "p",
    { class: "empty", hidden: true },
    "No models yet: a job registers its best model when it succeeds.",
  );
  root.append(
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Jobs"),
      h(
        "div",
        { class: "actions" },
        compare,
        h("a", { class: "button", href: "#/submit" }, "Submit a job"),
      ),
    ),
    dataTable(
      "jobs-table",
      [
        h("span", { class: "sr-only" }, "Compare"),
        "Job",
        "State",
        "Priority",
        "Progress",
        "Best",
        "Submitted",
        "Run time",
        "",
      ],
      jobsBody,
      jobsEmpty,
    ),
    h("h2", {}, "Models"),
    dataTable(
      "models-table",
      ["Model", "Job", "Task", "Validation", "Test", "Aliases", "Registered"],
      modelsBody,
      modelsEmpty,
    ),
  );

  let jobs = [];
  let succeededKey = null;
  const refresh = async () => {
    jobs = await api("/jobs", { signal });
    jobsBody.replaceChildren(...jobs.map((job) => jobRow(job, refresh, picked, toggle)));
    jobsEmpty.hidden = jobs.length > 0;
    // Models only change when a job succeeds (or one is imported): no need to poll them.
    const key = jobs
      .filter((job) => job.state === "succeeded")
      .map((job) => job.id)
      .join();
    if (key !== succeededKey) {
      succeededKey = key;
      await refreshModels(modelsBody, modelsEmpty, jobs, signal);
    }
  };
  await refresh();
  poll(refresh, signal);
}

async function poll(refresh, signal) {
  let failing = false;
  while (!signal.aborted) {
    await sleep(POLL_MS, signal);
    if (signal.aborted) return;
    try {
      await refresh();
      failing = false;
    } catch (error) {
      // One note per outage, not one every two seconds.
      if (!signal.aborted && !failing) notify(`Could not refresh the jobs: ${detailText(error)}`);
      failing = true;
    }
  }
}

function jobRow(job, refresh, picked, toggle) {
  const best = job.best
    ? [
        h("span", { class: "metric-name" }, job.best.metric),
        " ",
        h("strong", {}, num(job.best.value)),
      ]
    : h("span", { class: "muted" }, "–");
  // An ended job's count of running trials is its last, not news.
  const runningCount = TERMINAL.has(job.state) ? 0 : job.trials_running;
  const running = runningCount ? h("span", { class: "muted" }, ` · ${runningCount} running`) : null;
  const cancel = CANCELLABLE.has(job.state)
    ? h(
        "button",
        {
          class: "small danger",
          type: "button",
          onclick: async () => {
            if (await cancelJob(job)) await refresh();
          },
        },
        "Cancel",
      )
    : null;
  return h(
    "tr",
    { dataset: { jobId: job.id, state: job.state } },
    h(
      "td",
      { class: "pick" },
      h("input", {
        type: "checkbox",
        class: "compare-pick",
        "aria-label": `Compare ${job.name || job.id}`,
        checked: picked.has(job.id),
        onchange: (event) => toggle(job.id, event.target.checked),
      }),
    ),
    h(
      "td",
      {},
      h("a", { href: `#/jobs/${job.id}`, class: "job-name" }, job.name || "unnamed job"),
      h("div", { class: "id", title: job.id }, job.id.slice(0, 12)),
    ),
    h("td", {}, stateBadge(job.state)),
    h("td", {}, h("span", { class: `priority priority-${job.priority}` }, job.priority)),
    h(
      "td",
      {},
      h(
        "div",
        { class: "progress-cell" },
        progressBar(job.trials_done, job.trials_total, runningCount),
        h("span", { class: "count" }, `${job.trials_done} / ${job.trials_total}`),
        running,
      ),
    ),
    h("td", {}, best),
    h("td", {}, timeCell(job.submitted_at)),
    h("td", {}, duration(runSeconds(job))),
    h("td", { class: "actions" }, cancel),
  );
}

async function refreshModels(body, empty, jobs, signal) {
  const [models, aliases] = await Promise.all([
    api("/models", { signal }),
    api("/models/aliases", { signal }),
  ]);
  const names = new Map(jobs.map((job) => [job.id, job.name]));
  const aliasesOf = new Map();
  for (const [alias, modelId] of Object.entries(aliases)) {
    aliasesOf.set(modelId, [...(aliasesOf.get(modelId) ?? []), alias]);
  }
  body.replaceChildren(
    ...models.map((model) => {
      // The test counterpart of the model's metric (test_accuracy for val_accuracy).
      const tests = Object.entries(model.test_metrics ?? {});
      const wanted = model.metric.replace(/^val_/, "test_");
      const test = tests.find(([name]) => name === wanted) ?? tests[0];
      return h(
        "tr",
        { dataset: { modelId: model.id } },
        h("td", {}, h("a", { href: `#/models/${model.id}`, class: "id" }, model.id.slice(0, 12))),
        h(
          "td",
          {},
          names.has(model.job_id)
            ? h("a", { href: `#/jobs/${model.job_id}` }, names.get(model.job_id) || "unnamed job")
            : h("span", { class: "muted" }, "–"),
        ),
        h("td", {}, model.task),
        h(
          "td",
          {},
          h("span", { class: "metric-name" }, model.metric),
          " ",
          num(model.validation_value),
        ),
        h("td", {}, test ? [h("span", { class: "metric-name" }, test[0]), " ", num(test[1])] : "–"),
        h(
          "td",
          {},
          (aliasesOf.get(model.id) ?? []).map((alias) => h("span", { class: "chip" }, alias)),
        ),
        h("td", {}, timeCell(model.created_at)),
      );
    }),
  );
  empty.hidden = models.length > 0;
}
