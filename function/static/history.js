// The history sidebar: the signed-in caller's conversations as the service keeps them
// (GET /conversations), to open, delete, or leave for a new one.
import { errorFromResponse } from "./stream-chat.js";

/** The list in the sidebar; a failure shows there, and never stands in the way of chatting. */
export class History {
  /**
   * @param {HTMLElement} nav the sidebar, holding an <ol> and a .history-note
   * @param {URL} base where the service is: /conversations is beside /chat
   * @param {() => Promise<object>} headers the sign-in headers, asked for on every request
   * @param {{onOpen: (id: string) => void, onDelete: (id: string) => void, onLeave: () => void}} handlers
   *   onLeave: where focus goes when the list has nothing left to hold it
   */
  constructor(nav, base, headers, { onOpen, onDelete, onLeave }) {
    this.nav = nav;
    this.list = nav.querySelector("ol");
    this.more = nav.querySelector(".more");
    this.note = nav.querySelector(".history-note");
    this.next = null; // where the next page starts; null when the last page is shown
    this.olderShown = false; // pages past the first are in the list
    this.url = new URL("conversations", base);
    this.headers = headers;
    this.current = null;
    this.generation = 0; // a list that arrives after a newer request, or after sign-out, is dropped
    this.list.addEventListener("click", (event) => {
      const item = event.target.closest("li");
      if (!item || this.list.classList.contains("busy")) return;
      if (event.target.closest(".delete")) this.remove(item.dataset.id, item.dataset.title);
      else if (event.target.closest(".open")) onOpen(item.dataset.id);
    });
    this.more.addEventListener("click", () => this.showOlder());
    this.onDelete = onDelete;
    this.onLeave = onLeave;
  }

  /** Fetch one conversation, or the list; a refusal is thrown as an Error naming its code. */
  async request(id = null, options = {}, cursor = null) {
    const url = new URL(id ? `${this.url}/${encodeURIComponent(id)}` : this.url);
    if (cursor) url.searchParams.set("cursor", cursor);
    const response = await fetch(url, { ...options, headers: await this.headers() });
    if (!response.ok) throw await errorFromResponse(response);
    return response;
  }

  /** Show the caller's conversations, the most recently used first; `touched`, one just answered,
   * goes first whatever the list says (the service's index may not have it yet). */
  async refresh(touched = null) {
    this.nav.hidden = false;
    if (touched && this.olderShown) {
      // Read again, the list would shrink to its first page and the reader would lose their place:
      // the conversation just answered moves to the top where it is instead.
      this.list.prepend(this.itemOf(touched.conversationId) ?? this.item({ ...touched, updatedAt: Date.now() / 1000 }));
      this.note.textContent = "";
      return;
    }
    const generation = ++this.generation;
    this.olderShown = false;
    this.setNext(null); // the old list's place means nothing in the new one
    try {
      let { conversations, nextCursor } = await (await this.request()).json();
      if (generation !== this.generation) return;
      if (touched) {
        const listed = conversations.find((c) => c.conversationId === touched.conversationId);
        const others = conversations.filter((c) => c !== listed);
        conversations = [{ ...touched, ...listed, updatedAt: Date.now() / 1000 }, ...others];
      }
      this.list.replaceChildren(...conversations.map((c) => this.item(c)));
      this.setNext(nextCursor);
      this.note.textContent = conversations.length || this.next ? "" : "Conversations you have will show here.";
    } catch (error) {
      if (generation === this.generation) this.note.textContent = `History is unavailable: ${error.message}`;
    }
  }

  /** Add the next page below the list; focus goes to the first conversation it adds. */
  async showOlder() {
    const { generation, next } = this;
    this.more.disabled = true; // one page at a time
    this.more.setAttribute("aria-busy", "true");
    try {
      const { conversations, nextCursor } = await (await this.request(null, {}, next)).json();
      // A list read again meanwhile (an answer, a delete, another sign-in) has its own place.
      if (generation !== this.generation || next !== this.next) return;
      // One used since the list was read has moved up, and may be listed already.
      const shown = new Set([...this.list.children].map((item) => item.dataset.id));
      const added = conversations.filter((c) => !shown.has(c.conversationId)).map((c) => this.item(c));
      this.list.append(...added);
      this.olderShown ||= added.length > 0;
      this.setNext(nextCursor);
      this.note.textContent = added.length ? "" : "No older conversations in that page.";
      // The button may have gone with the last page: focus must not fall to the page's body.
      const target = added[0] ?? (this.more.hidden ? this.list.lastElementChild : null);
      target?.querySelector(".open").focus();
    } catch (error) {
      if (generation === this.generation) this.note.textContent = `Older conversations are unavailable: ${error.message}`;
    } finally {
      this.more.removeAttribute("aria-busy");
      this.more.disabled = this.list.classList.contains("busy");
    }
  }

  /** The list's item for a conversation, if it is shown. */
  itemOf(id) {
    return [...this.list.children].find((item) => item.dataset.id === id);
  }

  /** Remember where the next page starts, and offer it only if there is one. */
  setNext(cursor) {
    this.next = cursor ?? null;
    this.more.hidden = !this.next;
  }

  item({ conversationId, title, updatedAt }) {
    const item = document.createElement("li");
    item.dataset.id = conversationId;
    item.dataset.title = title;
    const open = document.createElement("button");
    open.type = "button";
    open.className = "open";
    open.textContent = title || "Untitled";
    open.title = `${title}\n${new Date(updatedAt * 1000).toLocaleString()}`;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "delete secondary";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Delete the conversation “${title || "Untitled"}”`);
    item.append(open, remove);
    if (conversationId === this.current) open.setAttribute("aria-current", "page");
    open.disabled = remove.disabled = this.list.classList.contains("busy");
    return item;
  }

  /** Show which conversation is open (none for a new chat). */
  mark(id) {
    this.current = id;
    for (const button of this.list.querySelectorAll(".open")) {
      if (button.parentElement.dataset.id === id) button.setAttribute("aria-current", "page");
      else button.removeAttribute("aria-current");
    }
  }

  /** While an answer is being written, the list waits: opening another would leave it half-shown. */
  setBusy(busy) {
    this.list.classList.toggle("busy", busy);
    for (const button of this.list.querySelectorAll("button")) button.disabled = busy;
    this.more.disabled = busy;
  }

  /** Put focus on the open conversation, or the first; false if the list is empty. */
  focus() {
    const item = this.list.querySelector("[aria-current]") ?? this.list.querySelector(".open");
    item?.focus();
    return Boolean(item);
  }

  /** Return a conversation as the service keeps it: {conversationId, title, modelId, turns}. */
  async open(id) {
    return (await this.request(id)).json();
  }

  async remove(id, title) {
    if (!confirm(`Delete the conversation “${title || "Untitled"}”? This cannot be undone.`)) return;
    const place = [...this.list.children].findIndex((item) => item.dataset.id === id);
    try {
      await this.request(id, { method: "DELETE" });
    } catch (error) {
      this.note.textContent = `The conversation was not deleted: ${error.message}`;
      return;
    }
    this.onDelete(id);
    // Taken out where it is, so older pages shown stay shown.
    this.itemOf(id)?.remove();
    if (!this.list.children.length && !this.next) this.note.textContent = "Conversations you have will show here.";
    // Focus stays in the list, on the conversation that took the deleted one's place.
    const next = this.list.children[Math.min(place, this.list.children.length - 1)];
    if (next) next.querySelector(".open").focus();
    else this.onLeave();
  }

  /** Signed out: the list was the last person's. */
  clear() {
    this.generation += 1;
    this.current = null;
    this.olderShown = false;
    this.list.replaceChildren();
    this.setNext(null);
    this.note.textContent = "";
    this.nav.hidden = true;
  }
}
