// Pieces every page uses: notes at the top of the page, cancelling a job.

import { api } from "./api.js";
import { detailText, h } from "./dom.js";

/** Show a note that goes away by itself (errors stay until closed). */
export function notify(message, kind = "error") {
  const area = document.getElementById("flash");
  const note = h(
    "div",
    { class: `note note-${kind}`, role: kind === "error" ? "alert" : "status" },
    h("span", {}, message),
    h(
      "button",
      { class: "link", type: "button", "aria-label": "Close", onclick: () => note.remove() },
      "×",
    ),
  );
  area.append(note);
  if (kind !== "error") setTimeout(() => note.remove(), 4000);
}

/** Ask, then cancel `job`; true if the gateway took the cancellation. */
export async function cancelJob(job) {
  const name = job.name ? `"${job.name}"` : job.id;
  if (!window.confirm(`Cancel job ${name}? Its running trials are stopped.`)) return false;
  try {
    await api(`/jobs/${job.id}`, { method: "DELETE" });
    notify(`Cancelling job ${name}.`, "info");
    return true;
  } catch (error) {
    notify(`Could not cancel job ${name}: ${detailText(error)}`);
    return false;
  }
}
