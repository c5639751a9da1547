// Renders a model's Markdown answer as it streams: parsed by marked, sanitized by DOMPurify,
// code highlighted by highlight.js (all vendored in ./vendor, see scripts/vendor-page).
import { Marked } from "./vendor/marked.js";
import DOMPurify from "./vendor/purify.js";
import hljs from "./vendor/highlight.js";

const escapes = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escape = (text) => String(text).replace(/[&<>"']/g, (c) => escapes[c]);

function renderer(highlight) {
  return {
    // Raw HTML in an answer is shown as the text it is, never parsed: a model can be made to echo
    // anything, and DOMPurify below is the second line, not the only one.
    html: ({ text }) => escape(text),
    // No image is fetched: a URL the model chose could carry the conversation to a stranger.
    image: ({ href, text }) => `<a href="${escape(href)}">${escape(text || "image")} (image not loaded)</a>`,
    code({ text, lang }) {
      const language = (lang || "").trim().split(/\s+/)[0].toLowerCase();
      const known = language && hljs.getLanguage(language);
      const body = highlight && known ? hljs.highlight(text, { language, ignoreIllegals: true }).value : escape(text);
      const label = escape(language || "text");
      return (
        `<div class="code-block"><div class="code-head"><span class="code-lang">${label}</span>` +
        `<button type="button" class="copy-code secondary" aria-label="Copy code (${label})">Copy code</button></div>` +
        `<pre><code class="hljs${known ? ` language-${label}` : ""}">${body}</code></pre></div>`
      );
    },
  };
}

const parsers = { plain: new Marked({ gfm: true }), highlighted: new Marked({ gfm: true }) };
parsers.plain.use({ renderer: renderer(false) });
parsers.highlighted.use({ renderer: renderer(true) });

const purify = DOMPurify();
// Without a DOM it can clean, DOMPurify would hand its input back as it is: fall back to plain text.
if (!purify.isSupported) throw new Error("DOMPurify cannot sanitize in this browser");
// Links open apart from the page, and give it no handle back; DOMPurify already drops
// javascript: and other unsafe URLs.
purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A" && node.hasAttribute("href")) {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

/** Return safe HTML for a piece of Markdown; code is highlighted only when asked (it costs). */
export function toHtml(markdown, { highlight = true } = {}) {
  const html = parsers[highlight ? "highlighted" : "plain"].parse(markdown);
  return purify.sanitize(html);
}

const FENCE = /^ {0,3}(`{3,}|~{3,})/;
const CLOSING_FENCE = /^ {0,3}(`{3,}|~{3,})\s*$/;
// A list item: never the start of a new block, or a loose list would be cut in two.
const LIST_ITEM = /^([-*+]|\d{1,9}[.)])(\s|$)/;

/**
 * Where `text` may be cut so that what comes before is whole blocks that will never change: the
 * end of a blank line outside any code fence, followed by a line that starts a new block at the
 * margin (an indented one could continue a list item). -1 if there is none yet.
 */
export function lastBoundary(text) {
  let fence = null;
  let boundary = -1;
  let start = 0;
  let previousBlank = false;
  while (start < text.length) {
    const newline = text.indexOf("\n", start);
    if (newline === -1) break; // the last line may still grow: never a boundary
    const line = text.slice(start, newline);
    const marker = (fence === null ? FENCE : CLOSING_FENCE).exec(line)?.[1];
    if (marker && (fence === null || (marker[0] === fence[0] && marker.length >= fence.length))) {
      fence = fence === null ? marker : null;
    } else if (fence === null && previousBlank && line !== "" && !/^\s/.test(line) && !LIST_ITEM.test(line)) {
      boundary = start;
    }
    previousBlank = fence === null && line.trim() === "";
    start = newline + 1;
  }
  return boundary;
}

/**
 * One answer's Markdown, rendered while it grows: the blocks before the last boundary are
 * rendered once and never touched again (so a selection there survives), and only the last,
 * unfinished block is re-rendered, at most once a frame. Code is highlighted once its block is done.
 */
export class LiveMarkdown {
  constructor(element, onRender = () => {}) {
    this.element = element;
    this.onRender = onRender;
    this.text = "";
    this.done = 0; // how much of `text` is in frozen blocks
    this.tail = document.createElement("div");
    this.tail.className = "md-tail";
    this.element.replaceChildren(this.tail);
    this.frame = 0;
    this.timer = 0;
    this.nextAt = 0;
    this.stats = { renders: 0, ms: 0, longestMs: 0 };
  }

  /** Show `text`, the whole answer so far; the page draws it at a coming frame. */
  update(text) {
    this.text = text;
    if (this.frame || this.timer) return;
    // A long unfinished block (one paragraph, one code block) costs more to draw each time: the
    // page then draws less often, so drawing never takes more than a quarter of the time.
    const wait = this.nextAt - performance.now();
    if (wait > 0) this.timer = setTimeout(() => this.schedule(), wait);
    else this.schedule();
  }

  schedule() {
    this.timer = 0;
    this.frame = requestAnimationFrame(() => this.render(false));
  }

  /** Draw what has arrived now, highlighting the last block too: the answer has ended. */
  finish() {
    cancelAnimationFrame(this.frame);
    clearTimeout(this.timer);
    this.render(true);
  }

  render(final) {
    const began = performance.now();
    this.frame = 0;
    this.timer = 0;
    const rest = this.text.slice(this.done);
    const cut = final ? rest.length : lastBoundary(rest);
    if (cut > 0) {
      const block = document.createElement("div");
      block.className = "md-block";
      block.innerHTML = toHtml(rest.slice(0, cut));
      this.tail.before(block);
      this.done += cut;
    }
    this.tail.innerHTML = final ? "" : toHtml(this.text.slice(this.done), { highlight: false });
    // Parsing, cleaning and putting the HTML in the page; the browser's layout and paint come after.
    const took = performance.now() - began;
    this.nextAt = began + 4 * took;
    this.stats.renders += 1;
    this.stats.ms += took;
    this.stats.longestMs = Math.max(this.stats.longestMs, took);
    this.onRender();
  }
}
