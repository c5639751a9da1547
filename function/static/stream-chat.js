/**
 * A small streaming client for the relay's POST /chat: copy this file into your app.
 *
 * Usage:
 *   import { streamChat, ChatError } from "./stream-chat.js";
 *   const controller = new AbortController();
 *   const last = await streamChat("https://…/chat", { prompt: "Hi" }, {
 *     onEvent: (event) => { if (event.type === "token") output.textContent += event.text; },
 *     signal: controller.signal, // controller.abort() stops the stream
 *   });
 *
 * Events passed to onEvent (the server's SSE events, with the event name as `type`):
 *   {type: "start", requestId, modelId}
 *   {type: "token", id, text}          answer text, in order
 *   {type: "reasoning", id, text}      the model's reasoning, when it shows it
 *   {type: "end", stopReason, usage, metrics: {ttftMs, durationMs}}
 *   {type: "error", code, message, retryable}   the stream failed after it started
 *
 * streamChat resolves with the last event (`end` or `error`). It rejects with a
 * ChatError when the server refuses the request before streaming (a JSON error
 * with a real HTTP status) or the stream ends without `end` or `error`, and with
 * the fetch error (AbortError on abort, TypeError on a network or CORS failure).
 */

/** The request failed before or outside the stream; `status` is the HTTP status (0 if none). */
export class ChatError extends Error {
  constructor(code, message, status = 0) {
    super(message);
    this.name = "ChatError";
    this.code = code;
    this.status = status;
  }
}

/** POST `body` as JSON to `url`, call `onEvent` for each event as it arrives, resolve with the last. */
export async function streamChat(url, body, { onEvent = () => {}, signal, headers = {} } = {}) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...headers },
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) {
    throw await errorFromResponse(response);
  }
  let last = null;
  const parser = new SseParser((type, data, id) => {
    const event = { type, ...JSON.parse(data) };
    if (id) event.id = Number(id);
    if (type === "end" || type === "error") last = event;
    onEvent(event);
  });
  const reader = response.body.getReader();
  // stream: true keeps a multi-byte character split across two chunks until its last byte arrives.
  const decoder = new TextDecoder("utf-8");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    parser.push(decoder.decode(value, { stream: true }));
  }
  parser.push(decoder.decode());
  parser.finish();
  if (!last) {
    throw new ChatError("truncated", "the stream ended before the answer was complete", response.status);
  }
  return last;
}

/** Turn a refused request's JSON error body into a ChatError. */
async function errorFromResponse(response) {
  const text = await response.text();
  try {
    const { error } = JSON.parse(text);
    return new ChatError(error.code, error.message, response.status);
  } catch {
    return new ChatError("http_error", `HTTP ${response.status}: ${text.slice(0, 200)}`, response.status);
  }
}

/** An incremental server-sent events parser: feed it text in pieces cut anywhere. */
export class SseParser {
  constructor(dispatch) {
    this.dispatch = dispatch;
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.type = "";
    this.data = [];
    this.id = "";
  }

  push(text) {
    this.buffer += text;
    // A line is complete only once its terminator has arrived; the rest waits for the next chunk.
    // A trailing "\r" might be the first half of "\r\n", so it waits too.
    const lines = this.buffer.split(/\r\n|\r(?!$)|\n/);
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
    else if (field === "id") this.id = value;
  }
}
