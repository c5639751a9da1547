"""Images and documents in a request, checked against Bedrock's limits before it is called."""

from __future__ import annotations

import base64
import re
import struct

# Bedrock's limits on one Converse request (the Message type's documentation).
MAX_IMAGES = 20
MAX_IMAGE_BYTES = 3_750_000
MAX_IMAGE_PIXELS = 8000
MAX_DOCUMENTS = 5
MAX_DOCUMENT_BYTES = 4_500_000
IMAGE_FORMATS = ("png", "jpeg", "gif", "webp")
DOCUMENT_FORMATS = ("pdf", "csv", "doc", "docx", "xls", "xlsx", "html", "txt", "md")
# What a file of each format begins with; a format missing here is text, which may begin with anything.
SIGNATURES = {
    "png": (b"\x89PNG\r\n\x1a\n",),
    "jpeg": (b"\xff\xd8\xff",),
    "gif": (b"GIF87a", b"GIF89a"),
    "webp": (b"RIFF",),
    "pdf": (b"%PDF-",),
    "docx": (b"PK\x03\x04",),
    "xlsx": (b"PK\x03\x04",),
    "doc": (b"\xd0\xcf\x11\xe0",),
    "xls": (b"\xd0\xcf\x11\xe0",),
}
# Bedrock's rule for a document's name: letters, digits, hyphens, parentheses, square brackets,
# and single spaces between them; at most 200 characters.
DOCUMENT_NAME = re.compile(r"[A-Za-z0-9()\[\]-]+( [A-Za-z0-9()\[\]-]+)*")
MAX_NAME_CHARACTERS = 200


class AttachmentError(ValueError):
    """An attachment breaks a limit; `field` is the part of it at fault, for the caller to place."""

    def __init__(self, message: str, field: str = "data"):
        super().__init__(message)
        self.message, self.field = message, field


class Attachments:
    """Counts one request's attachments and turns each into a Converse block."""

    def __init__(self) -> None:
        self.images = 0
        self.documents = 0
        self.names: set[str] = set()  # Bedrock refuses two documents of one name in a request

    def image(self, image_format: object, data: object) -> dict:
        """Return a Converse image block from a format and base64 data, or raise AttachmentError."""
        self.images += 1
        if self.images > MAX_IMAGES:
            raise AttachmentError(f"is one image too many: at most {MAX_IMAGES} go in one request", "image")
        if image_format not in IMAGE_FORMATS:
            raise AttachmentError(f"must be one of {', '.join(IMAGE_FORMATS)}", "format")
        raw = _decode(data, MAX_IMAGE_BYTES, "an image")
        _check_signature(raw, image_format)
        size = image_size(raw, image_format)
        if size is None:
            raise AttachmentError(f"is not a whole {image_format} image")
        if max(size) > MAX_IMAGE_PIXELS:
            width, height = size
            raise AttachmentError(
                f"is {width} by {height} pixels; Bedrock takes at most {MAX_IMAGE_PIXELS} on each side"
            )
        return {"image": {"format": image_format, "source": {"bytes": raw}}}

    def document(self, document_format: object, name: object, data: object) -> dict:
        """Return a Converse document block; raise AttachmentError if it breaks a limit."""
        self.documents += 1
        if self.documents > MAX_DOCUMENTS:
            raise AttachmentError(
                f"is one document too many: at most {MAX_DOCUMENTS} go in one request", "document"
            )
        if document_format not in DOCUMENT_FORMATS:
            raise AttachmentError(f"must be one of {', '.join(DOCUMENT_FORMATS)}", "format")
        if not isinstance(name, str) or len(name) > MAX_NAME_CHARACTERS or not DOCUMENT_NAME.fullmatch(name):
            raise AttachmentError(
                "must be 1 to 200 letters, digits, hyphens, parentheses or square brackets, "
                "with single spaces between words (Bedrock's rule; the file's extension goes in 'format')",
                "name",
            )
        if name in self.names:
            raise AttachmentError(f"{name!r} is another document's name too; Bedrock takes each once", "name")
        self.names.add(name)
        raw = _decode(data, MAX_DOCUMENT_BYTES, "a document")
        _check_signature(raw, document_format)
        return {"document": {"format": document_format, "name": name, "source": {"bytes": raw}}}


def lacks_text(blocks: list[dict]) -> bool:
    """Tell whether a message's blocks hold a document but no text, which Bedrock refuses."""
    return any("document" in block for block in blocks) and not any("text" in block for block in blocks)


def safe_name(filename: str, taken: set[str]) -> str:
    """Return a file's name as Bedrock allows a document's: no extension, other characters as
    spaces, and a number after it if another document has it."""
    stem = filename.rsplit(".", 1)[0] if "." in filename else filename
    cleaned = " ".join(re.sub(r"[^A-Za-z0-9()\[\]-]+", " ", stem).split())
    name = cleaned[: MAX_NAME_CHARACTERS - 6].strip() or "document"
    number = 2
    unique = name
    while unique in taken:
        unique, number = f"{name} ({number})", number + 1
    return unique


def _decode(data: object, limit: int, what: str) -> bytes:
    if not isinstance(data, str):
        raise AttachmentError("must be a base64 string")
    # A base64 text four thirds the limit's size cannot hold more: refuse before decoding it.
    if len(data) > (limit + 2) // 3 * 4 + 4:
        raise AttachmentError(f"is about {len(data) * 3 // 4} bytes; {what} may be at most {limit}")
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError:  # binascii.Error, or characters outside ASCII
        raise AttachmentError("is not valid base64") from None
    if not raw:
        raise AttachmentError("is empty")
    if len(raw) > limit:
        raise AttachmentError(f"is {len(raw)} bytes; {what} may be at most {limit}")
    return raw


def _check_signature(raw: bytes, declared: str) -> None:
    """Refuse bytes of another format than the one declared: Bedrock would, after a round trip."""
    marks = SIGNATURES.get(declared)
    if marks is None or (raw.startswith(marks) and (declared != "webp" or raw[8:12] == b"WEBP")):
        return
    found = next(
        (name for name, marks in SIGNATURES.items() if raw.startswith(marks) and name != declared), None
    )
    said = f"; its bytes are those of {found}" if found in IMAGE_FORMATS or found == "pdf" else ""
    raise AttachmentError(f"is not {declared} data{said}")


def image_size(raw: bytes, image_format: str) -> tuple[int, int] | None:
    """Return an image's width and height from its header; None if the header is cut or malformed."""
    try:
        if image_format == "png":
            return struct.unpack(">II", raw[16:24]) if raw[12:16] == b"IHDR" else None
        if image_format == "gif":
            return struct.unpack("<HH", raw[6:10])
        if image_format == "webp":
            return _webp_size(raw)
        return _jpeg_size(raw)
    except struct.error:
        return None


def _webp_size(raw: bytes) -> tuple[int, int] | None:
    if len(raw) < 30:  # every kind of header ends by byte 30
        return None
    chunk = raw[12:16]
    if chunk == b"VP8X":  # 24-bit sizes, less one
        return int.from_bytes(raw[24:27], "little") + 1, int.from_bytes(raw[27:30], "little") + 1
    if chunk == b"VP8L":  # 14-bit sizes, less one, after a signature byte
        bits = int.from_bytes(raw[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":  # 14-bit sizes after a frame tag and start code
        width, height = struct.unpack("<HH", raw[26:30])
        return width & 0x3FFF, height & 0x3FFF
    return None


def _jpeg_size(raw: bytes) -> tuple[int, int] | None:
    """Walk the JPEG's markers to its start of frame, which holds the size."""
    at = 2
    while at + 9 <= len(raw):
        if raw[at] != 0xFF:
            return None
        marker = raw[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        # Start-of-frame markers: C0 to CF, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", raw[at + 5 : at + 9])
            return width, height
        at += 2 + struct.unpack(">H", raw[at + 2 : at + 4])[0]
    return None
