// The chat page: sends the conversation with streamChat and renders each event as it arrives.
import { ChatError, streamChat } from "./stream-chat.js";

const chatUrl = new URL(document.body.dataset.chatUrl, document.baseURI);
const conversation = document.getElementById("conversation");
const form = document.getElementById("composer");
const prompt = document.getElementById("prompt");
const sendButton = document.getElementById("send");
const stopButton = document.getElementById("stop");
const status = document.getElementById("status");
const template = document.getElementById("turn-template");

// The whole conversation lives here, client-side: the service keeps no state between requests.
let messages = [];
let controller = null;

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
  if (text.trim() && !controller) send(text);
});
stopButton.addEventListener("click", () => controller?.abort());
document.getElementById("new-chat").addEventListener("click", () => {
  controller?.abort();
  messages = [];
  conversation.replaceChildren();
  document.getElementById("empty").hidden = false;
  setStatus("");
  prompt.focus();
});

function setStatus(text) {
  status.textContent = text;
}

function setBusy(busy) {
  sendButton.disabled = busy;
  stopButton.disabled = !busy;
}

/** Render one turn and stream its answer into it. */
async function send(text) {
  const turn = template.content.firstElementChild.cloneNode(true);
  const view = {
    assistant: turn.querySelector(".assistant"),
    reasoning: turn.querySelector(".reasoning"),
    reasoningText: turn.querySelector(".reasoning-text"),
    answer: turn.querySelector(".answer"),
    message: turn.querySelector(".message"),
    stats: turn.querySelector(".stats"),
  };
  turn.querySelector(".user").textContent = text;
  document.getElementById("empty").hidden = true;
  conversation.append(turn);
  prompt.value = "";
  messages.push({ role: "user", content: text });
  controller = new AbortController();
  setBusy(true);
  setStatus("Waiting for the first token…");

  const sent = performance.now();
  const live = { firstToken: 0, tokens: 0 };
  let answer = "";
  let outcome = "failed";
  try {
    const last = await streamChat(chatUrl, { messages }, {
      signal: controller.signal,
      onEvent(event) {
        if (event.type === "token") {
          if (!live.tokens) {
            live.firstToken = performance.now();
            setStatus("Answering…");
          }
          live.tokens += 1;
          answer += event.text;
          view.answer.textContent = answer;
          showStats(view.stats, liveStats(sent, live));
          turn.scrollIntoView({ block: "end" });
        } else if (event.type === "reasoning") {
          view.reasoning.hidden = false;
          view.reasoningText.textContent += event.text;
        } else if (event.type === "end") {
          showStats(view.stats, endStats(event));
        } else if (event.type === "error") {
          showError(view.message, event.code, event.message, event.retryable);
        }
      },
    });
    outcome = last.type === "end" ? "complete" : "failed";
    setStatus(outcome === "complete" ? `Answer complete: ${last.stopReason}.` : "The answer stopped with an error.");
  } catch (error) {
    if (error.name === "AbortError") {
      outcome = "stopped";
      setStatus("Stopped.");
      view.message.hidden = false;
      view.message.className = "message notice";
      view.message.textContent = "Stopped before the end of the answer.";
    } else if (error instanceof ChatError) {
      showError(view.message, error.code, error.message);
      setStatus("The request failed.");
    } else if (error instanceof TypeError) {
      // fetch() gives no detail for a network or CORS failure, by design.
      const detail = "the service could not be reached, or it refused this page's origin";
      showError(view.message, "network_error", `${error.message}: ${detail}.`);
      setStatus("The request failed.");
    } else {
      showError(view.message, "client_error", String(error));
      setStatus("The request failed.");
    }
  } finally {
    view.assistant.setAttribute("aria-busy", "false");
    controller = null;
    setBusy(false);
  }
  if (answer) {
    // Even a partial answer stays in the conversation, so roles keep alternating.
    messages.push({ role: "assistant", content: answer });
  } else {
    // Nothing came back: forget the question and offer it again.
    messages.pop();
    if (outcome !== "stopped") prompt.value = text;
  }
  prompt.focus();
}

function showError(element, code, message, retryable) {
  element.hidden = false;
  element.className = "message error";
  element.textContent = `Error ${code}: ${message}${retryable ? " (retryable: try again)" : ""}`;
}

function liveStats(sent, live) {
  const seconds = (performance.now() - live.firstToken) / 1000;
  return {
    "Time to first token": `${Math.round(live.firstToken - sent)} ms`,
    "Tokens/s": seconds > 0 && live.tokens > 1 ? ((live.tokens - 1) / seconds).toFixed(1) : "…",
    Tokens: String(live.tokens),
  };
}

function endStats(event) {
  const { ttftMs, durationMs } = event.metrics;
  const { inputTokens, outputTokens } = event.usage;
  const streaming = (durationMs - (ttftMs ?? durationMs)) / 1000;
  return {
    "Time to first token": ttftMs == null ? "–" : `${ttftMs} ms`,
    // Under a tenth of a second is too short to give a meaningful rate.
    "Tokens/s": streaming >= 0.1 && outputTokens > 1 ? ((outputTokens - 1) / streaming).toFixed(1) : "–",
    "Stop reason": event.stopReason,
    Usage: `${inputTokens ?? "?"} in, ${outputTokens ?? "?"} out`,
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
