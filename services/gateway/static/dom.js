// Building elements and formatting values. Text always goes in as text nodes: job
// names, specs and errors come from users and must never be parsed as HTML.

/**
 * Create an element: `h("a", {href: "#/", class: "x", onclick: fn}, "text", child)`.
 * `class`, `dataset`, `style`, `value`, `on<event>` are handled; booleans toggle
 * attributes; null, undefined and false children are skipped.
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") element.className = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name === "style") element.style.cssText = value;
    else if (name === "value") element.value = value;
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
export const CANCELLABLE = new Set(["queued", "running"]);

export function stateBadge(state) {
  return h("span", { class: `badge state-${state}` }, state);
}

/** A number short enough for a table cell: 4 significant digits, integers as they are. */
export function num(value) {
  if (value === null || value === undefined || value === "") return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return String(value);
  const size = Math.abs(value);
  if (size !== 0 && (size < 1e-3 || size >= 1e6)) return value.toExponential(2);
  return String(Number(value.toPrecision(4)));
}

/** A time of day for today's times, else a date and time; the full time on hover. */
export function timeCell(seconds) {
  if (!seconds) return h("span", { class: "muted" }, "–");
  const date = new Date(seconds * 1000);
  const today = date.toDateString() === new Date().toDateString();
  const text = today
    ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
  return h("time", { datetime: date.toISOString(), title: date.toString() }, text);
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || seconds < 0) return "–";
  if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
}

/** How long a job has run (so far, while it runs); null before it starts. */
export function runSeconds(job) {
  if (!job.started_at) return null;
  return (job.finished_at ?? Date.now() / 1000) - job.started_at;
}

export function progressBar(done, total, running = 0) {
  const share = (count) => (total ? Math.min(100, (100 * count) / total) : 0);
  return h(
    "div",
    { class: "progress", title: `${done} of ${total} trials done, ${running} running` },
    h("div", { class: "done", style: `width: ${share(done)}%` }),
    h("div", { class: "running", style: `width: ${share(running)}%` }),
  );
}

/** Key/value rows for a small object (metrics, a config). */
export function keyValues(object, id) {
  const entries = Object.entries(object ?? {});
  if (!entries.length) return h("p", { class: "muted" }, "none");
  return h(
    "dl",
    { class: "kv", id },
    entries.map(([key, value]) => [h("dt", {}, key), h("dd", {}, num(value))]),
  );
}

/** A panel of the page: a heading, a note beside it (text, or a button), the content. */
export function section(title, note, ...content) {
  return h(
    "section",
    {},
    h("div", { class: "section-head" }, h("h2", {}, title), note),
    ...content,
  );
}

/** A table of rows in its frame: `titles` head the columns, `body` is its tbody, and
 * `after` (the note shown while it is empty) sits below it. */
export function dataTable(id, titles, body, after = null) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { id, class: "data" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          titles.map((title) => h("th", {}, title)),
        ),
      ),
      body,
    ),
    after,
  );
}

export function errorBox(message, id) {
  return h("div", { class: "error-box", id, role: "alert" }, message);
}

/** The API's `detail` as one line of text (a message, or pydantic's list of errors). */
export function detailText(error) {
  const detail = error?.detail ?? error?.message ?? String(error);
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((item) => `${(item.loc ?? []).join(".")}: ${item.msg}`).join("; ");
  }
  return JSON.stringify(detail);
}

/** The search space's parameters that are searched (a domain, not a constant). */
export function tunedParameters(spec) {
  return Object.entries(spec?.search_space ?? {})
    .filter(([, value]) => value !== null && typeof value === "object")
    .map(([name]) => name);
}
