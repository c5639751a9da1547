// The chat page: sends the conversation with streamChat and renders each event as it arrives.
import {
  currentToken,
  getToken,
  setUpSignIn,
  signIn,
  signInHeaders,
  signOut,
  signedInAs,
  useApiKey,
} from "./sign-in.js";
import { ACCEPT, Tray, contentOf, held, preview } from "./attachments.js";
import { ChatError, cancelChat, streamChat } from "./stream-chat.js";

const chatUrl = new URL(document.body.dataset.chatUrl, document.baseURI);
const conversation = document.getElementById("conversation");
const form = document.getElementById("composer");
const prompt = document.getElementById("prompt");
const sendButton = document.getElementById("send");
const stopButton = document.getElementById("stop");
const status = document.getElementById("status");
const template = document.getElementById("turn-template");
const tray = new Tray(document.getElementById("attachments"), setStatus, () => held(messages));
const fileInput = document.getElementById("file-input");
const jump = document.getElementById("jump");
// Loaded now, without holding up the page: answers render as plain text until it is here.
const markdown = import("./markdown.js").catch(() => null);

// The whole conversation lives here, client-side: the service keeps no state between requests.
let messages = [];
let controller = null;
// The answer being generated, when the service keeps streams: Stop must reach it, wherever it runs.
let streamId = null;

// What sign-in the service asks for; the page works as before when it asks for none.
let session = null;
const account = document.getElementById("account");
const ready = setUpSignIn(new URL("config", chatUrl)).then((found) => {
  session = found;
  showAccount();
  if (session.error) setStatus(session.error);
});

function showAccount() {
  if (!session?.modes.length) return;
  const who = signedInAs(session);
  account.hidden = false;
  document.getElementById("who").textContent = who ? `Signed in: ${who}` : "";
  document.getElementById("sign-in").hidden = Boolean(who) || !session.modes.includes("jwt");
  document.getElementById("api-key-form").hidden = Boolean(who) || !session.modes.includes("api_key");
  document.getElementById("sign-out").hidden = !who;
  if (!who) setStatus("Sign in to chat.");
}

document.getElementById("sign-in").addEventListener("click", () => signIn(session));
document.getElementById("sign-out").addEventListener("click", () => {
  signOut(session);
  showAccount();
});
document.getElementById("api-key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  useApiKey(document.getElementById("api-key").value);
  document.getElementById("api-key").value = "";
  showAccount();
  setStatus("");
});

prompt.addEventListener("keydown", (event) => {
  // isComposing: Enter that confirms an IME composition must not send.
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});
form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = prompt.value;
  if (text.trim() && !controller) send(text, tray.take());
});

// Files come by the picker, by dropping them anywhere on the page, or by pasting into the message.
fileInput.accept = ACCEPT;
document.getElementById("attach").addEventListener("click", () => fileInput.click());
fileInput.addEventListener("change", () => {
  tray.add(fileInput.files);
  fileInput.value = "";
});
addEventListener("dragover", (event) => {
  if (event.dataTransfer?.types.includes("Files")) event.preventDefault();
});
addEventListener("drop", (event) => {
  if (!event.dataTransfer?.files.length) return;
  event.preventDefault();
  tray.add(event.dataTransfer.files);
});
prompt.addEventListener("paste", (event) => {
  const files = event.clipboardData?.files;
  if (!files?.length) return; // plain text pastes as usual
  event.preventDefault();
  tray.add(files);
});
stopButton.addEventListener("click", stop);

// The page follows a growing answer while the reader is at the bottom, and stops following once
// they scroll up to read; "Jump to latest" takes them back. The composer is sticky, so the
// bottom of the page is where the newest line shows just above it.
let following = true;
const atBottom = () => innerHeight + scrollY >= document.documentElement.scrollHeight - 40;
addEventListener("scroll", () => {
  following = atBottom();
  if (following) jump.hidden = true;
}, { passive: true });
function follow() {
  if (following) scrollTo({ top: document.documentElement.scrollHeight });
  else jump.hidden = false;
}
jump.addEventListener("click", () => {
  following = true;
  jump.hidden = true;
  follow();
  prompt.focus();
});

// Copy: the whole answer as the Markdown it came as, or one code block as its text.
conversation.addEventListener("click", (event) => {
  const button = event.target.closest(".copy-code");
  if (button) copy(button, button.closest(".code-block").querySelector("code").textContent);
});
async function copy(button, text) {
  try {
    await navigator.clipboard.writeText(text);
    const label = button.textContent;
    button.textContent = "Copied";
    setStatus("Copied to the clipboard.");
    setTimeout(() => { button.textContent = label; }, 1500);
  } catch {
    setStatus("The clipboard refused the copy (the page needs https or localhost, and permission).");
  }
}
document.getElementById("new-chat").addEventListener("click", () => {
  stop();
  messages = [];
  tray.take();
  conversation.replaceChildren();
  document.getElementById("empty").hidden = false;
  setStatus("");
  prompt.focus();
});

/** Stop reading, and ask the service to stop generating: on Lambda, closing the fetch alone does not. */
function stop() {
  if (streamId) {
    const options = { headers: signInHeaders(), getToken: session ? () => getToken(session) : undefined };
    cancelChat(chatUrl, streamId, options).catch(() => {});
    streamId = null;
  }
  controller?.abort();
}

// A page that closes mid-answer stops it too; keepalive lets the request outlive the page, and
// the token held now is sent, since a refresh could not finish in time.
addEventListener("pagehide", () => {
  if (!streamId) return;
  const token = session ? currentToken(session) : null;
  const headers = { ...signInHeaders(), ...(token ? { Authorization: `Bearer ${token}` } : {}) };
  cancelChat(chatUrl, streamId, { headers, keepalive: true }).catch(() => {});
});

function setStatus(text) {
  status.textContent = text;
}

function setBusy(busy) {
  sendButton.disabled = busy;
  stopButton.disabled = !busy;
}

/** Render one turn, with its files, and stream its answer into it. */
async function send(text, files) {
  const turn = template.content.firstElementChild.cloneNode(true);
  const view = {
    user: turn.querySelector(".user"),
    assistant: turn.querySelector(".assistant"),
    reasoning: turn.querySelector(".reasoning"),
    reasoningText: turn.querySelector(".reasoning-text"),
    answer: turn.querySelector(".answer"),
    message: turn.querySelector(".message"),
    stats: turn.querySelector(".stats"),
    copy: turn.querySelector(".copy-answer"),
  };
  view.user.querySelector(".user-text").textContent = text;
  const sentFiles = view.user.querySelector(".attachments");
  sentFiles.replaceChildren(...files.map((file) => preview(file)));
  sentFiles.hidden = !files.length;
  document.getElementById("empty").hidden = true;
  conversation.append(turn);
  following = true;
  follow();
  prompt.value = "";
  // New chat replaces `messages`; this request must then leave the new conversation alone.
  const history = messages;
  controller = new AbortController();
  setBusy(true);
  setStatus("Waiting for the first token…");

  const sent = performance.now();
  const live = { firstToken: 0, chunks: 0, events: 0 };
  let answer = "";
  view.copy.addEventListener("click", () => copy(view.copy, answer));
  const rendered = await markdown;
  const markdownView = rendered ? new rendered.LiveMarkdown(view.answer, follow) : null;
  if (!markdownView) view.answer.classList.add("plain");
  let outcome = "failed";
  let asked = false; // the question is in `history` (reading a file can fail first)
  try {
    history.push({ role: "user", content: await contentOf(text, files, held(history).names) });
    asked = true;
    await ready;
    const last = await streamChat(chatUrl, { messages: history }, {
      signal: controller.signal,
      headers: signInHeaders(),
      getToken: session ? () => getToken(session) : undefined,
      onReconnect({ attempt }) {
        view.message.hidden = false;
        view.message.className = "message notice reconnecting";
        view.message.textContent = `Connection lost; reconnecting (attempt ${attempt})…`;
        setStatus("Reconnecting…");
        live.reconnecting = true;
      },
      onEvent(event) {
        live.events += 1;
        if (live.reconnecting) {
          // Resumed: the same answer carries on in place.
          live.reconnecting = false;
          view.message.hidden = true;
          setStatus("Answering…");
        }
        if (event.type === "start") {
          streamId = event.streamId ?? null;
        } else if (event.type === "token") {
          if (!live.chunks) {
            live.firstToken = performance.now();
            setStatus("Answering…");
          }
          live.chunks += 1;
          answer += event.text;
          if (markdownView) markdownView.update(answer);
          else view.answer.textContent = answer;
          showStats(view.stats, liveStats(sent, live));
          if (!markdownView) follow();
        } else if (event.type === "reasoning") {
          view.reasoning.hidden = false;
          view.reasoningText.textContent += event.text;
        } else if (event.type === "guardrail") {
          // A distinct notice: the answer was stopped by policy, not by a fault.
          const policies = event.policies?.length ? ` (${event.policies.join(", ")})` : "";
          view.message.hidden = false;
          view.message.className = "message notice guardrail";
          view.message.textContent = `Blocked by a guardrail on the ${event.source ?? "answer"}${policies}.`;
          setStatus(view.message.textContent);
        } else if (event.type === "end") {
          showStats(view.stats, endStats(event));
          if (event.reasoningRedacted) {
            // Encrypted by the model's provider: shown as withheld, not as if the model never reasoned.
            const redacted = view.reasoning.querySelector(".redacted");
            const blocks = event.reasoningRedacted === 1 ? "1 block" : `${event.reasoningRedacted} blocks`;
            redacted.textContent = `${blocks} of reasoning redacted by the model's provider (encrypted, not shown).`;
            redacted.hidden = false;
            view.reasoning.hidden = false;
          }
        } else if (event.type === "error") {
          showError(view, event.code, event.message, event.retryable);
        }
      },
    });
    if (last.type === "end" && last.stopReason === "guardrail_intervened") {
      outcome = "complete";
    } else if (last.type === "end") {
      outcome = "complete";
      const tokens = last.usage?.outputTokens;
      setStatus(`Answer complete: ${last.stopReason}${tokens == null ? "" : `, ${tokens} tokens`}.`);
    }
  } catch (error) {
    if (error.name === "AbortError") {
      outcome = "stopped";
      view.message.hidden = false;
      view.message.className = "message notice";
      view.message.textContent = "Stopped before the end of the answer.";
      if (messages === history) setStatus("Stopped.");
      follow();
    } else if (error instanceof ChatError) {
      // Statuses under 400 belong to a stream that started and then went wrong.
      const status = error.status >= 400 ? ` (HTTP ${error.status})` : "";
      // Two sentences, each ended: the service's message may lack its full stop.
      const message = /[.!?]$/.test(error.message) ? error.message : `${error.message}.`;
      const wait = error.retryAfter ? ` Retry after ${error.retryAfter} s.` : "";
      showError(view, `${error.code}${status}`, `${message}${wait}`);
    } else if (error instanceof TypeError && live.events) {
      showError(view, "connection_lost", "the connection was lost partway through the answer", true);
    } else if (error instanceof TypeError) {
      // fetch() gives no detail for a network or CORS failure, by design.
      const detail = "the service could not be reached, or it refused this page's origin";
      showError(view, "network_error", `${error.message}: ${detail}.`);
    } else {
      showError(view, "client_error", String(error));
    }
  } finally {
    // A refused refresh signs out: the header must say so.
    showAccount();
    markdownView?.finish();
    window.__render = markdownView?.stats; // what rendering cost, read by the browser tests
    view.assistant.setAttribute("aria-busy", "false");
    controller = null;
    streamId = null;
    setBusy(false);
  }
  if (messages !== history) return; // New chat was pressed: this turn is gone.
  if (answer) {
    // Even a partial answer stays in the conversation, so roles keep alternating.
    history.push({ role: "assistant", content: answer });
  } else {
    // Nothing came back: forget the question, say so, and offer it again unless the user typed anew.
    if (asked) history.pop();
    turn.classList.add("unsent");
    if (outcome !== "stopped" && !prompt.value) {
      prompt.value = text;
      if (!tray.files.length) tray.add(files);
    }
  }
  prompt.focus();
}

/** Show an error in the turn and announce it through the status line. */
function showError(view, code, message, retryable) {
  // The answer is over: done before the announcement, so assistive tech does not wait on it.
  view.assistant.setAttribute("aria-busy", "false");
  const text = `Error ${code}: ${message}${retryable ? " (retryable: try again)" : ""}`;
  view.message.hidden = false;
  view.message.className = "message error";
  view.message.textContent = text;
  setStatus(text);
  follow();
}

function liveStats(sent, live) {
  // Chunks, not tokens: an event may carry several tokens; the true count comes with `end`.
  const seconds = (performance.now() - live.firstToken) / 1000;
  return {
    "Time to first token": `${Math.round(live.firstToken - sent)} ms`,
    "Chunks/s": seconds > 0 && live.chunks > 1 ? ((live.chunks - 1) / seconds).toFixed(1) : "…",
    Chunks: String(live.chunks),
  };
}

function endStats(event) {
  const { ttftMs, durationMs } = event.metrics;
  // usage is null when Bedrock never sent its metadata, e.g. when the deadline stopped the stream.
  const { inputTokens, outputTokens } = event.usage ?? {};
  const streaming = (durationMs - (ttftMs ?? durationMs)) / 1000;
  return {
    "Time to first token": ttftMs == null ? "–" : `${ttftMs} ms`,
    // Under a tenth of a second is too short to give a meaningful rate.
    "Tokens/s": streaming >= 0.1 && outputTokens > 1 ? ((outputTokens - 1) / streaming).toFixed(1) : "–",
    "Stop reason": event.stopReason,
    Usage: event.usage ? `${inputTokens ?? "?"} in, ${outputTokens ?? "?"} out` : "not reported",
  };
}

function showStats(element, stats) {
  element.replaceChildren(
    ...Object.entries(stats).map(([name, value]) => {
      const item = document.createElement("div");
      const term = document.createElement("dt");
      const detail = document.createElement("dd");
      term.textContent = name;
      detail.textContent = value;
      item.append(term, detail);
      return item;
    }),
  );
}
