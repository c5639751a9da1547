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
import { ACCEPT, Tray, contentOf, fileOf, held, notKept, preview } from "./attachments.js";
import { History } from "./history.js";
import { forget, keep, saved } from "./saved.js";
import { endStats, liveStats, showStats } from "./stats.js";
import { ChatError, cancelChat, sleep, streamChat } from "./stream-chat.js";

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
const modelPicker = document.getElementById("model");
const liveAnswer = document.getElementById("live-answer");
// Loaded now, without holding up the page: answers render as plain text until it is here.
const markdown = import("./markdown.js").catch(() => null);

// The whole conversation lives here, client-side: each request sends it all. With history on, the
// service keeps a copy under `conversationId`, following this one through edits and retries.
let messages = [];
let conversationId = null;
let controller = null;
// The answer being generated, when the service keeps streams: Stop must reach it, wherever it runs.
let streamId = null;

// What sign-in the service asks for; the page works as before when it asks for none.
let session = null;
const account = document.getElementById("account");
const ready = setUpSignIn(new URL("config", chatUrl)).then((found) => {
  session = found;
  showAccount();
  showModels(session.config?.models);
  showHistory();
  if (session.error) setStatus(session.error);
});

// The signed-in caller's conversations, when the service keeps them (the store and sign-in are on).
async function authHeaders() {
  return headersWith(session ? await getToken(session) : null);
}
function headersWith(token) {
  return { ...signInHeaders(), ...(token ? { Authorization: `Bearer ${token}` } : {}) };
}
const sidebar = new History(document.getElementById("history"), chatUrl, authHeaders, {
  onOpen: openConversation,
  onDelete: (id) => id === conversationId && newChat(),
  onLeave: () => prompt.focus(),
});
const historyOn = () => Boolean(session?.config?.history && signedInAs(session));
/** Show the list when the service keeps history for whoever is signed in; `touched` was just answered. */
function showHistory(touched = null) {
  const on = historyOn();
  document.body.classList.toggle("with-history", on);
  document.getElementById("history-toggle").hidden = !on;
  if (on) sidebar.refresh(touched);
  else sidebar.clear();
}
// On a narrow screen the list is a panel, opened from the header and closed once used.
const historyToggle = document.getElementById("history-toggle");
function showPanel(open) {
  document.getElementById("history").classList.toggle("open", open);
  historyToggle.setAttribute("aria-expanded", String(open));
  if (open && !sidebar.focus()) historyToggle.focus();
}
historyToggle.addEventListener("click", () => showPanel(historyToggle.getAttribute("aria-expanded") !== "true"));
addEventListener("keydown", (event) => {
  if (event.key === "Escape" && historyToggle.getAttribute("aria-expanded") === "true") {
    showPanel(false);
    historyToggle.focus();
  }
});

/** Open a kept conversation in place of this one, with the model its last answer used. */
let opening = 0;
async function openConversation(id) {
  if (controller) return;
  showPanel(false);
  const ticket = ++opening; // a later click, or a message sent meanwhile, wins
  let kept;
  try {
    kept = await sidebar.open(id);
  } catch (error) {
    setStatus(`The conversation could not be opened: ${error.message}`);
    showHistory(); // deleted elsewhere, or expired: the list shows what is there now
    return;
  }
  await restored;
  if (ticket !== opening || controller) return;
  newChat();
  // A file was kept by name: the model is told so, as the service tells it for a `prompt`.
  const named = (files) => files.map((file) => file.name ?? file.type).join(", ");
  const turns = kept.turns.slice(0, kept.turns.length - (kept.turns.length % 2));
  messages = turns.map((t) => ({ role: t.role, content: t.content || `(files not kept: ${named(t.files ?? [])})` }));
  conversationId = id;
  sidebar.mark(id);
  if ([...modelPicker.options].some((option) => option.value === kept.modelId)) modelPicker.value = kept.modelId;
  await showConversation(turns.map((turn) => turn.files ?? []));
  save();
  setStatus(`Opened “${kept.title || "Untitled"}”.`);
  prompt.focus();
}

/** Keep the conversation for a reload of the tab, with the model it was held with and its id. */
function save() {
  // Whole exchanges only: a question still being answered is not part of the conversation yet.
  const whole = messages.slice(0, messages.length - (messages.length % 2));
  keep({ messages: whole, model: modelPicker.value || null, conversationId, who: shownWho ?? null }, textOf);
}

/** Offer the models the service allows, when it allows more than one; the saved one first. */
function showModels(models) {
  if (!models || models.allowed.length < 2) return;
  modelPicker.replaceChildren(...models.allowed.map((id) => new Option(id, id)));
  const kept = saved().model;
  modelPicker.value = models.allowed.includes(kept) ? kept : models.default;
  document.getElementById("model-picker").hidden = false;
}
modelPicker.addEventListener("change", save);

const textOf = (content) => (typeof content === "string" ? content : (content.find((b) => "text" in b)?.text ?? ""));
const filesOf = (content) => (typeof content === "string" ? [] : content.filter((b) => !("text" in b)).map(fileOf));

/** Show the saved conversation again, each answer rendered as it was at its end. */
async function restore() {
  await ready;
  const { messages: kept, conversationId: id, who } = saved();
  // Another user's, saved before a sign-in ended without Sign out (a refused refresh).
  if ((who ?? null) !== shownWho) return forget();
  const alternating = (m, i) => m?.role === (i % 2 ? "assistant" : "user") && m.content != null;
  if (!Array.isArray(kept) || !kept.length || kept.length % 2 || !kept.every(alternating)) return;
  messages = kept;
  conversationId = typeof id === "string" ? id : null;
  sidebar.mark(conversationId);
  await showConversation();
}

/** Render `messages`, each answer as it was at its end; `gone` lists each message's files kept by name. */
async function showConversation(gone = []) {
  const rendered = await markdown;
  for (let index = 0; index < messages.length; index += 2) {
    const view = newTurn(textOf(messages[index].content), filesOf(messages[index].content));
    view.turn.dataset.index = String(index);
    if (gone[index]?.length) {
      const files = view.user.querySelector(".attachments");
      files.append(...gone[index].map(notKept));
      files.hidden = false;
    }
    const answer = textOf(messages[index + 1]?.content ?? "");
    if (rendered) view.answer.innerHTML = rendered.toHtml(answer);
    else view.answer.textContent = answer;
    view.answer.classList.toggle("plain", !rendered);
    view.assistant.setAttribute("aria-busy", "false");
    view.copy.addEventListener("click", () => copy(view.copy, answer));
  }
  following = true;
  follow();
}
// A message sent before the saved conversation is back would go before it.
const restored = restore();

// Who the page shows as signed in; when that changes, the conversation on screen goes with them.
let shownWho = null;
function showAccount() {
  if (!session?.modes.length) return;
  const who = signedInAs(session);
  if (shownWho && who !== shownWho) newChat();
  shownWho = who;
  account.hidden = false;
  document.getElementById("who").textContent = who ? `Signed in: ${who}` : "";
  document.getElementById("sign-in").hidden = Boolean(who) || !session.modes.includes("jwt");
  document.getElementById("api-key-form").hidden = Boolean(who) || !session.modes.includes("api_key");
  document.getElementById("sign-out").hidden = !who;
  if (!who) setStatus("Sign in to chat.");
}

document.getElementById("sign-in").addEventListener("click", () => signIn(session));
document.getElementById("sign-out").addEventListener("click", () => {
  // The conversation was the signed-in user's: it goes with them (a shared computer's next user).
  newChat();
  signOut(session);
  showAccount();
  showHistory();
});
document.getElementById("api-key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  useApiKey(document.getElementById("api-key").value);
  document.getElementById("api-key").value = "";
  showAccount();
  showHistory();
  setStatus("");
});

prompt.addEventListener("keydown", (event) => {
  // isComposing: Enter that confirms an IME composition must not send.
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = prompt.value;
  if (!text.trim() || controller) return;
  await restored;
  opening += 1; // an open still loading would replace what is being sent
  if (editing) replace(text, tray.take());
  else send(text, tray.take());
});

// Editing an earlier message branches from it: it and everything after it are replaced.
let editing = null;
conversation.addEventListener("click", (event) => {
  const turn = event.target.closest(".turn");
  if (!turn || controller) return;
  if (event.target.closest(".retry")) retry(turn);
  if (event.target.closest(".edit")) startEditing(turn);
});
prompt.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && editing) {
    stopEditing();
    prompt.value = "";
    setStatus("");
  }
});
function startEditing(turn) {
  stopEditing();
  editing = turn;
  turn.classList.add("editing");
  prompt.value = textOf(messages[Number(turn.dataset.index)].content);
  setStatus("Editing an earlier message: Send replaces it and everything after it; Escape cancels.");
  prompt.focus();
}
function stopEditing() {
  editing?.classList.remove("editing");
  editing = null;
}
/** Send the edited message in place of the one being edited, keeping its files, dropping what followed. */
async function replace(text, files) {
  const turn = editing;
  stopEditing();
  const index = Number(turn.dataset.index);
  const old = messages[index].content;
  const kept = typeof old === "string" ? [] : old.filter((b) => !("text" in b));
  // Names taken: by the messages before, and by the files the edited message keeps.
  const taken = held(messages.slice(0, index)).names;
  for (const block of kept) if (block.document) taken.add(block.document.name);
  let added;
  try {
    added = files.length ? (await contentOf(text, files, taken)).slice(1) : [];
  } catch (error) {
    setStatus(`The files could not be read: ${error.message}`);
    tray.add(files);
    return;
  }
  messages.length = index;
  while (turn.nextElementSibling) turn.nextElementSibling.remove();
  turn.remove();
  const blocks = [...kept, ...added];
  send(text, [...kept.map(fileOf), ...files], blocks.length ? [{ text }, ...blocks] : text);
}
/** Ask the last question again: its answer is dropped, and a new one is streamed in its place. */
function retry(turn) {
  stopEditing();
  const index = Number(turn.dataset.index);
  const question = messages[index];
  messages.length = index;
  turn.remove();
  send(textOf(question.content), filesOf(question.content), question.content);
}

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
    button.dataset.label ??= button.textContent;
    button.textContent = "Copied";
    setStatus("Copied to the clipboard.");
    setTimeout(() => { button.textContent = button.dataset.label; }, 1500);
  } catch {
    setStatus("The clipboard refused the copy (the page needs https or localhost, and permission).");
  }
}
document.getElementById("new-chat").addEventListener("click", () => {
  newChat();
  prompt.focus();
});
function newChat() {
  stop();
  messages = [];
  conversationId = null;
  sidebar.mark(null);
  stopEditing();
  forget();
  tray.take();
  conversation.replaceChildren();
  document.getElementById("empty").hidden = false;
  setStatus("");
}

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
  const headers = headersWith(session ? currentToken(session) : null);
  cancelChat(chatUrl, streamId, { headers, keepalive: true }).catch(() => {});
});

function setStatus(text) {
  status.textContent = text;
}

function setBusy(busy) {
  sendButton.disabled = busy;
  stopButton.disabled = !busy;
  // Retry and Edit wait for the answer being written; the model stays as the answer began.
  document.body.classList.toggle("busy", busy);
  modelPicker.disabled = busy;
  sidebar.setBusy(busy);
}

/** Add a turn for a user message, with its files; its answer goes in its assistant part. */
function newTurn(text, files) {
  const turn = template.content.firstElementChild.cloneNode(true);
  const view = {
    turn,
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
  return view;
}

/** Render one turn, with its files, and stream its answer into it; `content` is the message when
 * it is made already (a retry, an edit). */
async function send(text, files, content = null) {
  const view = newTurn(text, files);
  const turn = view.turn;
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
    history.push({ role: "user", content: content ?? (await contentOf(text, files, held(history).names)) });
    turn.dataset.index = String(history.length - 1);
    asked = true;
    await ready;
    const body = { messages: history };
    if (modelPicker.value) body.modelId = modelPicker.value;
    // The service keeps a copy: in this conversation, or in a new one whose id `start` brings.
    if (historyOn()) Object.assign(body, conversationId ? { conversationId } : { store: true });
    const last = await streamKept(body, {
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
          // Resumed: the same answer carries on in place, and the page says it was interrupted.
          live.reconnecting = false;
          view.message.className = "message notice resumed";
          view.message.textContent = "The connection dropped and was resumed: nothing was lost.";
          setStatus("Resumed.");
        }
        if (event.type === "start") {
          streamId = event.streamId ?? null;
          if (event.conversationId && messages === history) {
            conversationId = event.conversationId;
            sidebar.mark(conversationId);
          }
        } else if (event.type === "token") {
          if (!live.chunks) {
            live.firstToken = performance.now();
            setStatus("Answering…");
          }
          live.chunks += 1;
          answer += event.text;
          if (markdownView) markdownView.update(answer);
          else view.answer.textContent = answer;
          announce(view.answer, false);
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
      // Deleted elsewhere, or expired: the next send keeps this history as a new conversation.
      const gone = error.code === "not_found" && conversationId && messages === history;
      if (gone) conversationId = null;
      const again = gone ? " Send again to keep it as a new conversation." : "";
      showError(view, `${error.code}${status}`, `${message}${wait}${again}`);
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
    // A refused refresh signs out: the header and the list must say so. The list also moves this
    // conversation to the top, or shows it for the first time; with no answer, nothing was kept.
    const before = shownWho;
    showAccount();
    const touched = answer && conversationId && messages === history;
    if (answer || shownWho !== before) showHistory(touched ? { conversationId, title: textOf(history[0].content) } : null);
    markdownView?.finish();
    window.__render = markdownView?.stats; // what rendering cost, read by the browser tests
    view.assistant.setAttribute("aria-busy", "false");
    controller = null;
    streamId = null;
    setBusy(false);
  }
  announce(view.answer, true);
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
  save();
  prompt.focus();
}

/** streamChat, waiting while the conversation's previous answer (one just stopped) is being kept. */
const BUSY_ATTEMPTS = 10;
async function streamKept(body, options) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await streamChat(chatUrl, body, options);
    } catch (error) {
      if (!(error instanceof ChatError && error.code === "conversation_busy") || attempt === BUSY_ATTEMPTS) throw error;
      setStatus("Waiting for the answer just stopped to be kept…");
      await sleep(1000, options.signal);
    }
  }
}

// A screen reader hears the answer as it grows, a few seconds' worth at a time, not token by token:
// the rendered text (no Markdown marks), up to the last whole word.
const ANNOUNCE_EVERY_MS = 3000;
let announced = { answer: null, at: 0, length: 0 };
function announce(answer, ended) {
  const now = performance.now();
  if (announced.answer !== answer) announced = { answer, at: now, length: 0 }; // a new answer
  if (!ended && now - announced.at < ANNOUNCE_EVERY_MS) return;
  const text = answer.textContent;
  const end = ended ? text.length : text.search(/\s\S*$/) + 1;
  const fresh = text.slice(announced.length, Math.max(end, announced.length)).trim();
  announced = { answer, at: now, length: Math.max(end, announced.length) };
  if (fresh) liveAnswer.textContent = fresh;
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
