// The conversation survives a reload of the tab: sessionStorage, this tab only, gone when it closes.

const SAVED = "bedrock-relay-chat";

/** Save the page's state; over the tab's quota (files are large), with each message's text alone. */
export function keep(state, textOf) {
  const texts = () => state.messages.map((m) => ({ ...m, content: textOf(m.content) }));
  // Storage the browser refuses outright (site data blocked) keeps nothing, and the page works on.
  for (const attempt of [() => state, () => ({ ...state, messages: texts() }), null]) {
    try {
      if (!attempt) return forget();
      return sessionStorage.setItem(SAVED, JSON.stringify(attempt()));
    } catch {}
  }
}

export function forget() {
  try {
    sessionStorage.removeItem(SAVED);
  } catch {}
}

/** Return what was saved: {messages, model, conversationId}, or {} when nothing was. */
export function saved() {
  try {
    return JSON.parse(sessionStorage.getItem(SAVED)) ?? {};
  } catch {
    return {};
  }
}
