/**
 * A small streaming client for the relay's POST /chat: copy this file into your app.
 *
 * Usage:
 *   import { streamChat, ChatError } from "./stream-chat.js";
 *   const controller = new AbortController();
 *   const last = await streamChat("https://…/chat", { prompt: "Hi" }, {
 *     onEvent: (event) => { if (event.type === "token") output.textContent += event.text; },
 *     signal: controller.signal, // controller.abort() stops the stream
 *     headers: { "X-Api-Key": key },    // optional: extra request headers
 *     getToken: async () => idToken,     // optional: a bearer token, asked for on every request
 *     onReconnect: ({ attempt, delayMs }) => {},  // optional: told before each resume attempt
 *   });
 *   // With the service's stream store on: stop generation wherever it runs, not only this fetch.
 *   controller.abort(); await cancelChat("https://…/chat", streamId, { headers });
 *
 * Events passed to onEvent (the server's SSE events, with the event name as `type`):
 *   {type: "start", requestId, modelId, streamId}   streamId only with the store on
 *   {type: "token", id, text}          answer text, in order
 *   {type: "reasoning", id, text}      the model's reasoning, when it shows it
 *   {type: "end", stopReason, usage, metrics: {ttftMs, durationMs}}
 *   {type: "error", code, message, retryable}   the stream failed after it started
 *
 * When the connection drops partway and the stream has a streamId, streamChat resumes
 * it (GET url/streamId with Last-Event-ID), with backoff from 0.5 s to 8 s, at most
 * `maxReconnects` times: onEvent sees each event once, in order, as if nothing happened.
 *
 * streamChat resolves with the last event (`end` or `error`). It rejects with a
 * ChatError when the server refuses the request before streaming (a JSON error
 * with a real HTTP status; `retryAfter` holds any Retry-After header), answers
 * with something other than an event stream, sends an event that is not JSON, or
 * the stream ends without `end` or `error` and cannot be resumed (`truncated`, or
 * `connection_lost` once resuming gave up); with the fetch error (AbortError on
 * abort, TypeError on a network or CORS failure); and with whatever onEvent throws.
 */

/** The request failed before or outside the stream; `status` is the HTTP status (0 if none). */
export class ChatError extends Error {
  constructor(code, message, status = 0, retryAfter = null) {
    super(message);
    this.name = "ChatError";
    this.code = code;
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/** POST `body` as JSON to `url`, call `onEvent` for each event as it arrives, resolve with the last. */
export async function streamChat(
  url,
  body,
  { onEvent = () => {}, signal, headers = {}, getToken, onReconnect = () => {}, maxReconnects = 8 } = {},
) {
  // With the service's stream store on, `start` names the stream: a dropped connection resumes it.
  let streamId = null;
  let lastId = 0;
  const handle = (event) => {
    if (event.type === "start") {
      if (streamId) return; // a resumed connection starts again; the page has its start already
      streamId = event.streamId ?? null;
    } else if (event.type === "token" || event.type === "reasoning") {
      if (event.id <= lastId) return; // sent before the connection dropped
      lastId = event.id;
    }
    onEvent(event);
  };
  const send = async (target, init) => {
    // Asked for per request, so a token refreshed since the last one is the one sent.
    const token = getToken ? await getToken() : null;
    const auth = token ? { Authorization: `Bearer ${token}` } : {};
    const response = await fetch(target, {
      ...init,
      headers: { Accept: "text/event-stream", ...init.headers, ...headers, ...auth },
      signal,
    });
    return readEvents(response, handle);
  };
  let dropped;
  try {
    const last = await send(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (last) return last;
    dropped = new ChatError("truncated", "the stream ended before the answer was complete");
  } catch (error) {
    if (!resumable(error)) throw error;
    dropped = error;
  }
  // The connection dropped partway: pick the same answer up after the last delta, with backoff.
  for (let attempt = 1; streamId && attempt <= maxReconnects; attempt += 1) {
    const delayMs = Math.min(MAX_BACKOFF_MS, 500 * 2 ** (attempt - 1));
    onReconnect({ attempt, delayMs });
    await sleep(delayMs, signal);
    try {
      const last = await send(`${url}/${encodeURIComponent(streamId)}`, {
        headers: { "Last-Event-ID": String(lastId) },
      });
      if (last) return last;
    } catch (error) {
      if (!resumable(error)) throw error;
      dropped = error;
    }
  }
  if (!streamId || dropped instanceof ChatError) throw dropped;
  throw new ChatError("connection_lost", "the connection was lost partway through the answer");
}

/** Ask the service to stop a stream wherever it runs (the store must be on); resolves with its answer. */
export async function cancelChat(url, streamId, { headers = {}, getToken, keepalive = false } = {}) {
  const token = getToken ? await getToken() : null;
  const auth = token ? { Authorization: `Bearer ${token}` } : {};
  // keepalive: the request outlives a page that is closing.
  return fetch(`${url}/${encodeURIComponent(streamId)}/cancel`, {
    method: "POST",
    headers: { ...headers, ...auth },
    keepalive,
  });
}

const MAX_BACKOFF_MS = 8000;

/** A dropped connection (not the user's abort, not a refusal) is worth resuming. */
function resumable(error) {
  if (error.name === "AbortError") return false;
  if (error instanceof ChatError) return error.code === "truncated" || error.status >= 500;
  return error instanceof TypeError; // fetch's network failure
}

/** Wait `ms`, or until `signal` aborts (then reject with its reason). */
export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

/** Read one response's events into `handle`; resolve with its `end` or `error`, or null if it stopped short. */
async function readEvents(response, handle) {
  if (!response.ok) {
    throw await errorFromResponse(response);
  }
  const contentType = response.headers.get("Content-Type") ?? "";
  if (!contentType.toLowerCase().startsWith("text/event-stream")) {
    // A proxy or login page in front of the service answers 200 with HTML, say.
    const text = await response.text();
    const detail = `HTTP ${response.status} ${contentType}: ${text.slice(0, 200)}`;
    throw new ChatError("unexpected_response", detail, response.status);
  }
  let last = null;
  const parser = new SseParser((type, data, id) => {
    let fields;
    try {
      fields = JSON.parse(data);
    } catch {
      throw new ChatError("bad_event", `a ${type} event is not JSON: ${data.slice(0, 200)}`, response.status);
    }
    const event = { type, ...fields };
    if (id) event.id = Number(id);
    if (type === "end" || type === "error") last = event;
    handle(event);
  });
  const reader = response.body.getReader();
  // stream: true keeps a multi-byte character split across two chunks until its last byte arrives.
  const decoder = new TextDecoder("utf-8");
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.push(decoder.decode(value, { stream: true }));
    }
  } catch (error) {
    // Closing the connection tells the server to stop generating an answer nobody will read.
    await reader.cancel().catch(() => {});
    throw error;
  }
  parser.push(decoder.decode());
  parser.finish();
  return last;
}

/** Turn a refused request's JSON error body into a ChatError, or its raw text if it has none. */
export async function errorFromResponse(response) {
  const text = await response.text();
  const retryAfter = response.headers.get("Retry-After");
  let error = null;
  try {
    error = JSON.parse(text).error;
  } catch {
    // Not JSON: a proxy or gateway error page, say; the raw text is shown below.
  }
  if (typeof error?.code === "string") {
    return new ChatError(error.code, String(error.message ?? ""), response.status, retryAfter);
  }
  const message = `no JSON error in the answer: ${text.slice(0, 200)}`;
  return new ChatError("http_error", message, response.status, retryAfter);
}

/** An incremental server-sent events parser: feed it text in pieces cut anywhere. */
export class SseParser {
  constructor(dispatch) {
    this.dispatch = dispatch;
    this.buffer = "";
    this.started = false;
    this.pendingCR = false;
    // The last event id carries over to later events until a new id line replaces it.
    this.id = "";
    this.reset();
  }

  reset() {
    this.type = "";
    this.data = [];
  }

  push(text) {
    if (!text) return;
    if (!this.started) {
      // A byte order mark may open the stream; it is not part of the first field name.
      this.started = true;
      if (text.startsWith("\uFEFF")) text = text.slice(1);
    }
    // A chunk that ended in "\r" already ended its line, so a "\n" opening the next is its other half.
    if (this.pendingCR && text.startsWith("\n")) text = text.slice(1);
    this.pendingCR = text.endsWith("\r");
    // A line is complete only once its terminator has arrived; the rest waits for the next chunk.
    const lines = (this.buffer + text).split(/\r\n|\r|\n/);
    this.buffer = lines.pop();
    for (const line of lines) this.line(line);
  }

  finish() {
    // The SSE spec drops an event that was never closed by a blank line.
    this.buffer = "";
    this.reset();
  }

  line(line) {
    if (line === "") {
      if (this.data.length) this.dispatch(this.type || "message", this.data.join("\n"), this.id);
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // a comment: the server's `: ping` heartbeat
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.id = value; // the spec ignores ids with NUL
  }
}
