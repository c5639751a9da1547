// Files attached to the next message: picked, dropped or pasted; checked against Bedrock's limits
// before they are sent; shown in the composer and in the turn; sent as /chat content blocks.

// Bedrock's limits on one request (the Converse Message type): the service checks them too.
const IMAGE_TYPES = { "image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp" };
const DOCUMENT_TYPES = { "application/pdf": "pdf" };
const LIMITS = {
  image: { count: 20, bytes: 3_750_000 },
  document: { count: 5, bytes: 4_500_000 },
};
export const ACCEPT = [...Object.keys(IMAGE_TYPES), ...Object.keys(DOCUMENT_TYPES)].join(",");
// The service's default MAX_REQUEST_BYTES, within a Function URL's 6 MB; some room is kept for the text.
const MAX_BODY_BYTES = 6_000_000 - 100_000;

const base64Length = (bytes) => Math.ceil(bytes / 3) * 4;

/** What the conversation's earlier messages hold already: each turn sends them all again. */
export function held(messages) {
  const totals = { image: 0, document: 0, bytes: 0, names: new Set() };
  for (const message of messages) {
    if (typeof message.content === "string") {
      totals.bytes += message.content.length;
      continue;
    }
    for (const block of message.content) {
      if (block.image) totals.image += 1;
      if (block.document) {
        totals.document += 1;
        totals.names.add(block.document.name);
      }
      const source = block.image ?? block.document;
      totals.bytes += source ? source.data.length : block.text.length;
    }
  }
  return totals;
}

function kindOf(file) {
  if (file.type in IMAGE_TYPES) return "image";
  if (file.type in DOCUMENT_TYPES) return "document";
  return null;
}

/**
 * A file's name as Bedrock allows a document's: no extension, only letters, digits, -()[] and
 * single spaces; numbered when another document in the request has it, since Bedrock takes each once.
 */
export function documentName(filename, taken) {
  const stem = filename.includes(".") ? filename.slice(0, filename.lastIndexOf(".")) : filename;
  const name = stem.replace(/[^A-Za-z0-9()[\]-]+/g, " ").trim().replace(/ +/g, " ").slice(0, 190).trim() || "document";
  let unique = name;
  for (let number = 2; taken.has(unique); number += 1) unique = `${name} (${number})`;
  taken.add(unique);
  return unique;
}

function base64Of(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    // A data: URL is "data:<type>;base64,<data>": the data is what a block carries.
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

/** The file a message's image or document block was made from: to show it again after a reload. */
export function fileOf(block) {
  const source = block.image ?? block.document;
  const kinds = block.image ? IMAGE_TYPES : DOCUMENT_TYPES;
  const type = Object.keys(kinds).find((mime) => kinds[mime] === source.format);
  const bytes = Uint8Array.from(atob(source.data), (c) => c.charCodeAt(0));
  return new File([bytes], block.document?.name ?? `image.${source.format}`, { type });
}

/** Show files as small previews: a thumbnail for an image, a labelled chip for a document. */
export function preview(file, onRemove) {
  const item = document.createElement("li");
  item.className = "attachment";
  if (kindOf(file) === "image") {
    const img = document.createElement("img");
    img.src = URL.createObjectURL(file);
    img.alt = file.name;
    img.onload = () => URL.revokeObjectURL(img.src);
    item.append(img);
  } else {
    item.append(chip(`PDF · ${file.name}`));
  }
  if (onRemove) {
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "remove";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Remove ${file.name}`);
    remove.addEventListener("click", onRemove);
    item.append(remove);
  }
  return item;
}

/** Show a file the service kept by name only (a conversation opened from history). */
export function notKept({ type, format, name }) {
  const item = document.createElement("li");
  item.className = "attachment";
  const label = chip(`${name ?? `${type} (${format})`}: not kept`);
  label.classList.add("not-kept");
  label.title = "The service keeps a conversation's files by name only: attach it again to ask about it.";
  item.append(label);
  return item;
}

function chip(text) {
  const label = document.createElement("span");
  label.className = "document-chip";
  label.textContent = text;
  return label;
}

/** The files waiting to go with the next message, and their previews in the composer. */
export class Tray {
  constructor(list, onMessage, earlier) {
    this.list = list;
    this.onMessage = onMessage; // tells the user why a file was not taken
    this.earlier = earlier; // what the conversation holds already, as held() counts it
    this.files = [];
  }

  /** Take files the user gave, refusing by name any Bedrock or the request size would refuse. */
  add(files) {
    const totals = this.earlier();
    for (const file of this.files) {
      totals[kindOf(file)] += 1;
      totals.bytes += base64Length(file.size);
    }
    for (const file of files) {
      const kind = kindOf(file);
      if (!kind) {
        this.onMessage(`${file.name} was not attached: only PNG, JPEG, GIF, WebP images and PDFs can be sent.`);
        continue;
      }
      const limit = LIMITS[kind];
      if (file.size > limit.bytes) {
        const megabytes = (limit.bytes / 1_000_000).toFixed(2);
        this.onMessage(`${file.name} was not attached: an ${kind} may be at most ${megabytes} MB.`);
        continue;
      }
      // Counted over the whole conversation: every turn sends the earlier files again.
      if (totals[kind] >= limit.count) {
        this.onMessage(`${file.name} was not attached: at most ${limit.count} ${kind}s go in one conversation.`);
        continue;
      }
      if (totals.bytes + base64Length(file.size) > MAX_BODY_BYTES) {
        this.onMessage(`${file.name} was not attached: the conversation would be over the 6 MB a request may carry.`);
        continue;
      }
      totals[kind] += 1;
      totals.bytes += base64Length(file.size);
      this.files.push(file);
    }
    this.render();
  }

  render() {
    this.list.replaceChildren(
      ...this.files.map((file) =>
        preview(file, () => {
          this.files = this.files.filter((f) => f !== file);
          this.render();
        }),
      ),
    );
    this.list.hidden = !this.files.length;
  }

  /** Hand over the files and empty the tray. */
  take() {
    const files = this.files;
    this.files = [];
    this.render();
    return files;
  }
}

/** A user message's content: the text alone, or the text and each file as a /chat content block. */
export async function contentOf(text, files, taken) {
  if (!files.length) return text;
  const blocks = [{ text }];
  for (const file of files) {
    const data = await base64Of(file);
    if (kindOf(file) === "image") {
      blocks.push({ image: { format: IMAGE_TYPES[file.type], data } });
    } else {
      const name = documentName(file.name, taken);
      blocks.push({ document: { format: DOCUMENT_TYPES[file.type], name, data } });
    }
  }
  return blocks;
}
