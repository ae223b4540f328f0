// Calls to the tunefleet HTTP API (same origin), with the API key when one is kept.

const KEY_ITEM = "tunefleet.apiKey";

/** An answer other than 2xx: its status and the API's `detail` (a string or a list). */
export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

const unauthorizedListeners = [];

/** Call `listener` whenever the API answers 401. */
export function onUnauthorized(listener) {
  unauthorizedListeners.push(listener);
}

export function apiKey() {
  return localStorage.getItem(KEY_ITEM);
}

export function setApiKey(key) {
  if (key) localStorage.setItem(KEY_ITEM, key);
  else localStorage.removeItem(KEY_ITEM);
}

function headers(extra = {}) {
  const all = { ...extra };
  const key = apiKey();
  if (key) all.Authorization = `Bearer ${key}`;
  return all;
}

async function check(response) {
  if (response.ok) return response;
  if (response.status === 401) unauthorizedListeners.forEach((listener) => listener());
  let detail = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.detail !== undefined) detail = body.detail;
  } catch {
    // Not JSON (a proxy's error page): the status line says enough.
  }
  throw new ApiError(response.status, detail);
}

/** GET/POST/DELETE `path` and answer the parsed JSON (null for an empty body). */
export async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, signal, headers: headers({ Accept: "application/json" }) };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const response = await check(await fetch(path, init));
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/**
 * POST a form (a file upload) and answer the parsed JSON, calling `onProgress(sent,
 * total)` as the body goes out. XMLHttpRequest rather than fetch: fetch reports no
 * upload progress.
 */
export function upload(path, form, { onProgress, signal } = {}) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", path);
    for (const [name, value] of Object.entries(headers({ Accept: "application/json" }))) {
      request.setRequestHeader(name, value);
    }
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress?.(event.loaded, event.total);
    });
    request.addEventListener("load", () => {
      let body = null;
      try {
        body = request.responseText ? JSON.parse(request.responseText) : null;
      } catch {
        // Not JSON (a proxy's error page): the status line says enough.
      }
      if (request.status >= 200 && request.status < 300) return resolve(body);
      if (request.status === 401) unauthorizedListeners.forEach((listener) => listener());
      const detail = body?.detail ?? `${request.status} ${request.statusText}`;
      reject(new ApiError(request.status, detail));
    });
    request.addEventListener("error", () =>
      reject(new Error("the upload did not reach the server (the connection failed)")),
    );
    request.addEventListener("abort", () =>
      reject(new DOMException("the upload was stopped", "AbortError")),
    );
    signal?.addEventListener("abort", () => request.abort());
    request.send(form);
  });
}

/** Save the answer of a GET as a file: used when a key must go with the request,
 * which a plain download link cannot send. */
export async function download(path, filename) {
  const response = await check(await fetch(path, { headers: headers() }));
  const url = URL.createObjectURL(await response.blob());
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/**
 * Follow a Server-Sent Events stream, calling `onEvent(kind, data)` for each event
 * whose data is JSON, until `isLast(kind, data)` holds for one and the server ends the
 * stream, or `signal` aborts. Reconnects with Last-Event-ID after a dropped connection,
 * and after a stream the server ended before its last event (it ends quiet streams).
 *
 * Read with fetch rather than EventSource, which cannot send the Authorization header.
 */
export async function followEvents(path, onEvent, signal, isLast) {
  let lastId = null;
  let failures = 0;
  while (!signal.aborted) {
    try {
      const extra = { Accept: "text/event-stream" };
      if (lastId) extra["Last-Event-ID"] = lastId;
      const response = await check(await fetch(path, { headers: headers(extra), signal }));
      failures = 0;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let ended = false;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = parseEvent(block);
          if (event.id) lastId = event.id;
          if (event.data) {
            const data = JSON.parse(event.data);
            onEvent(event.kind, data);
            ended ||= isLast(event.kind, data);
          }
        }
      }
      if (ended) return;
      // Ended early (a quiet spell, or Redis went away): go on where it stopped.
      await sleep(1000, signal);
    } catch (error) {
      if (signal.aborted) return;
      if (error instanceof ApiError && error.status < 500) throw error;
      // A gateway restart or a dropped connection: wait a little longer each time.
      failures += 1;
      await sleep(Math.min(1000 * 2 ** failures, 15_000), signal);
    }
  }
}

function parseEvent(block) {
  const event = { kind: "message", data: "", id: null };
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") event.kind = value;
    else if (field === "data") data.push(value);
    else if (field === "id") event.id = value;
  }
  event.data = data.join("\n");
  return event;
}

/** Resolve after `ms`, or at once when `signal` aborts. */
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
