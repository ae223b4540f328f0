// The dashboard's entry point: hash routes to pages, and the API key form.
//   #/              jobs and models
//   #/jobs/<id>     a job
//   #/models/<id>   a model (an alias works too)
//   #/submit        submit a job (?dataset=<id>: the seed's grid on that dataset)
//   #/datasets      upload, read and delete datasets (#/datasets/<id>: one's summary)
//   #/compare?jobs=<id>,<id>   jobs' best trials side by side

import { ApiError, apiKey, onUnauthorized, setApiKey } from "./api.js";
import { comparePage } from "./compare.js";
import { datasetsPage } from "./datasets.js";
import { detailText, errorBox, h } from "./dom.js";
import { jobPage } from "./job.js";
import { jobsPage } from "./jobs.js";
import { modelPage } from "./model.js";
import { submitPage } from "./submit.js";
import { notify } from "./ui.js";

const ROUTES = [
  { pattern: /^#?\/?$/, page: jobsPage, nav: "jobs", title: "Jobs" },
  { pattern: /^#\/jobs\/([0-9a-f]{32})$/, page: jobPage, nav: "jobs", title: "Job" },
  { pattern: /^#\/models\/([0-9a-z_-]{1,32})$/, page: modelPage, nav: "jobs", title: "Model" },
  {
    pattern: /^#\/submit(?:\?dataset=([0-9a-f]{16,64}))?$/,
    page: submitPage,
    nav: "submit",
    title: "Submit a job",
  },
  {
    pattern: /^#\/datasets(?:\/([0-9a-f]{16,64}))?$/,
    page: datasetsPage,
    nav: "datasets",
    title: "Datasets",
  },
  {
    pattern: /^#\/compare\?jobs=((?:[0-9a-f]{32},?)+)$/,
    page: comparePage,
    nav: "jobs",
    title: "Compare jobs",
  },
];

const main = document.getElementById("main");
let leaving = null; // aborts the open page's polling and event stream

async function route() {
  leaving?.abort();
  const controller = new AbortController();
  leaving = controller;
  const hash = location.hash || "#/";
  const match = ROUTES.map((r) => [r, hash.match(r.pattern)]).find(([, m]) => m);
  main.replaceChildren();
  main.setAttribute("aria-busy", "true");
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", match !== undefined && link.dataset.nav === match[0].nav);
  }
  if (!match) {
    document.title = "Not found · tunefleet";
    main.append(errorBox(["No page here. ", h("a", { href: "#/" }, "See the jobs.")]));
    main.removeAttribute("aria-busy");
    return;
  }
  const [{ page, title }, groups] = match;
  document.title = `${title} · tunefleet`;
  const root = h("div", { class: "page" });
  main.append(root);
  try {
    const params = groups.slice(1).map((group) => group && decodeURIComponent(group));
    const loaded = page(root, params, controller.signal);
    // Pages that follow a running job resolve only when it ends: the page is shown
    // once its first content is there, not then.
    await Promise.race([loaded, firstContent(root)]);
    // Later failures (a chart that could not refresh) leave the page as it is.
    loaded.catch((error) => {
      if (!controller.signal.aborted && error?.name !== "AbortError") notify(detailText(error));
    });
  } catch (error) {
    failed(root, error, controller.signal);
  } finally {
    if (leaving === controller) main.removeAttribute("aria-busy");
  }
}

function firstContent(root) {
  return new Promise((resolve) => {
    if (root.childElementCount) return resolve();
    const observer = new MutationObserver(() => {
      observer.disconnect();
      resolve();
    });
    observer.observe(root, { childList: true });
  });
}

function failed(root, error, signal) {
  if (signal.aborted || error?.name === "AbortError") return;
  const message =
    error instanceof ApiError && error.status === 401
      ? "This server needs an API key: enter it above."
      : `Could not load this page: ${detailText(error)}`;
  root.replaceChildren(errorBox(message, "page-error"));
  if (!(error instanceof ApiError)) console.error(error);
}

// The API key: asked for when the API answers 401, kept in localStorage.
const authForm = document.getElementById("auth");
const keyInput = document.getElementById("api-key");
const forgetKey = document.getElementById("forget-key");

function showKeyState() {
  forgetKey.hidden = !apiKey();
}

onUnauthorized(() => {
  if (!authForm.hidden) return;
  authForm.hidden = false;
  keyInput.value = "";
  keyInput.focus();
});
authForm.addEventListener("submit", (event) => {
  event.preventDefault();
  setApiKey(keyInput.value.trim());
  authForm.hidden = true;
  showKeyState();
  route();
});
forgetKey.addEventListener("click", () => {
  setApiKey(null);
  showKeyState();
  route();
});

window.addEventListener("hashchange", route);
showKeyState();
route();
