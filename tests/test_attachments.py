"""Images and documents: each of Bedrock's limits checked before the call, and valid files sent whole."""

from __future__ import annotations

import hashlib

import openai
import pytest
from bedrock_relay.attachments import (
    MAX_DOCUMENT_BYTES,
    MAX_IMAGE_BYTES,
    AttachmentError,
    Attachments,
    image_size,
)

from tests.conftest import wait_for_record
from tests.media import b64, pdf, png
from tests.test_openai_api import MODEL

JSON = {"Accept": "application/json"}


def user(*blocks: dict) -> dict:
    return {"messages": [{"role": "user", "content": list(blocks)}]}


def text(words: str) -> dict:
    return {"text": words}


def image(data: bytes, image_format: str = "png") -> dict:
    return {"image": {"format": image_format, "data": b64(data)}}


def document(data: bytes, name: str = "report", document_format: str = "pdf") -> dict:
    return {"document": {"format": document_format, "name": name, "data": b64(data)}}


def test_an_image_and_a_pdf_reach_bedrock_whole_as_converse_blocks(client, standin):
    picture, paper = png(3, 2), pdf("quarterly figures")
    body = user(
        text("[standin tokens=3 id=attach-both] compare"), image(picture), document(paper, "Q3 report")
    )
    answer = client.post("/chat", json=body, headers=JSON)
    assert answer.status_code == 200, answer.text
    received = wait_for_record(standin, "attach-both", "complete").attachments
    assert received == [
        {
            "message": 0,
            "kind": "image",
            "format": "png",
            "name": None,
            "size": len(picture),
            "sha256": hashlib.sha256(picture).hexdigest(),
        },
        {
            "message": 0,
            "kind": "document",
            "format": "pdf",
            "name": "Q3 report",
            "size": len(paper),
            "sha256": hashlib.sha256(paper).hexdigest(),
        },
    ]


def test_a_body_of_several_megabytes_fits_under_the_raised_limit(client, standin):
    # Two 2 MB images: over the old 1 MiB limit, within a Function URL's 6 MB.
    big = png(64, 64) + b"\0" * 2_000_000
    body = user(text("[standin tokens=2 id=attach-big] these?"), image(big), image(big))
    assert client.post("/chat", json=body, headers=JSON).status_code == 200
    assert len(wait_for_record(standin, "attach-big", "complete").attachments) == 2


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            user(text("hi"), *[image(png())] * 21),
            "'messages[0].content[21].image' is one image too many: at most 20",
        ),
        (user(text("hi"), image(png(8001, 1))), "'messages[0].content[1].image.data' is 8001 by 1 pixels"),
        (
            user(text("hi"), image(png() + b"\0" * MAX_IMAGE_BYTES)),
            f"bytes; an image may be at most {MAX_IMAGE_BYTES}",
        ),
        (
            user(text("hi"), *[document(pdf(), f"r{i}") for i in range(6)]),
            "'messages[0].content[6].document' is one document too many: at most 5",
        ),
        (user(document(pdf())), "'messages[0].content' holds a document, so it needs a text block"),
        (
            user(text("hi"), document(pdf(), "terms"), document(pdf(), "terms")),
            "'messages[0].content[2].document.name' 'terms' is another document's name too",
        ),
        (user(text("hi"), image(png(), "bmp")), "'messages[0].content[1].image.format' must be one of png"),
        (
            user(text("hi"), image(pdf())),
            "'messages[0].content[1].image.data' is not png data; its bytes are those of pdf",
        ),
        (user(text("hi"), image(png()[:20])), "'messages[0].content[1].image.data' is not a whole png image"),
        (user(text("hi"), document(png())), "'messages[0].content[1].document.data' is not pdf data"),
        (user(text("hi"), document(pdf(), "report.pdf")), "'messages[0].content[1].document.name' must be"),
        (user(text("hi"), document(pdf(), "two  spaces")), "'messages[0].content[1].document.name' must be"),
        (
            user(text("hi"), {"image": {"format": "png", "data": "not base64!"}}),
            "'messages[0].content[1].image.data' is not valid base64",
        ),
        (
            user(text("hi"), {"image": {"format": "png", "data": "d\u00e9j\u00e0"}}),
            "'messages[0].content[1].image.data' is not valid base64",
        ),
        (
            user(text("hi"), {"image": {"format": "png", "data": b64(png()), "url": "x"}}),
            "'messages[0].content[1].image' must be an object with exactly 'data', 'format'",
        ),
        (user(text("hi"), {"video": {}}), "'messages[0].content[1]' must be one of"),
        (user(text("  ")), "'messages[0].content[0].text' must be a non-empty string"),
        (user(), "'messages[0].content' must be a non-empty string or a non-empty list of blocks"),
        (
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": [image(png())]},
                    {"role": "user", "content": "and?"},
                ]
            },
            "'messages[1].content[0]': only a user's message may hold an image",
        ),
    ],
)
def test_each_limit_is_a_400_naming_the_field_before_bedrock_is_called(client, standin, body, words):
    before = len(standin.records)
    answer = client.post("/chat", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "invalid_request"
    assert words in answer.json()["error"]["message"]
    assert len(standin.records) == before


def test_a_document_over_bedrocks_size_is_refused_by_name():
    # Over a Function URL's 6 MB once in base64, so checked here rather than through the server.
    with pytest.raises(AttachmentError) as raised:
        Attachments().document("pdf", "big", b64(pdf() + b"\0" * MAX_DOCUMENT_BYTES))
    assert raised.value.field == "data" and str(MAX_DOCUMENT_BYTES) in raised.value.message


def test_a_text_document_may_begin_with_anything(client, standin):
    body = user(text("[standin tokens=2 id=attach-md] summarise"), document(b"# Notes\n- one", "notes", "md"))
    assert client.post("/chat", json=body, headers=JSON).status_code == 200
    assert wait_for_record(standin, "attach-md", "complete").attachments[0]["format"] == "md"


def test_the_openai_sdk_sends_a_pdf_as_a_file_part(app, standin):
    sdk = openai.OpenAI(base_url=f"{app.url}/v1", api_key="local", timeout=30)
    content = [
        {"type": "text", "text": "[standin tokens=2 id=oa-file] what does it say?"},
        {
            "type": "file",
            "file": {
                "filename": "Q3 report (final).pdf",
                "file_data": f"data:application/pdf;base64,{b64(pdf())}",
            },
        },
    ]
    sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}])
    received = wait_for_record(standin, "oa-file", "complete").attachments
    # The file's name made one Bedrock allows: its extension is the format.
    assert [(a["kind"], a["format"], a["name"]) for a in received] == [
        ("document", "pdf", "Q3 report (final)")
    ]


def test_the_openai_api_names_the_part_of_a_bad_file(app):
    sdk = openai.OpenAI(base_url=f"{app.url}/v1", api_key="local", timeout=30, max_retries=0)
    content = [
        {
            "type": "file",
            "file": {"filename": "x.pdf", "file_data": f"data:application/pdf;base64,{b64(pdf())}"},
        }
    ]
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}])
    assert raised.value.body["param"] == "messages[0].content"
    assert "needs a text part" in raised.value.body["message"]


def test_the_openai_api_gives_files_of_one_name_names_of_their_own(app, standin):
    sdk = openai.OpenAI(base_url=f"{app.url}/v1", api_key="local", timeout=30)
    data = f"data:application/pdf;base64,{b64(pdf())}"
    content = [
        {"type": "text", "text": "[standin tokens=2 id=oa-files] compare"},
        {"type": "file", "file": {"filename": "terms.pdf", "file_data": data}},
        {"type": "file", "file": {"filename": "terms.pdf", "file_data": data}},
        {"type": "file", "file": {"file_data": data}},
    ]
    sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}])
    received = wait_for_record(standin, "oa-files", "complete").attachments
    assert [a["name"] for a in received] == ["terms", "terms (2)", "document"]


def jpeg(width: int, height: int) -> bytes:
    """A JPEG's start: SOI, an APP0 segment, then a baseline start of frame holding the size."""
    app0 = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    size = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    frame = b"\xff\xc0\x00\x11\x08" + size + b"\x03" + b"\0" * 9
    return b"\xff\xd8" + app0 + frame + b"\xff\xd9"


def webp(kind: bytes, width: int, height: int) -> bytes:
    """A WebP's header of each kind (lossy, lossless, extended), as its format's specification lays it out."""
    if kind == b"VP8X":
        body = b"\0" * 4 + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    elif kind == b"VP8L":
        body = b"\x2f" + ((width - 1) | (height - 1) << 14).to_bytes(4, "little")
    else:
        body = b"\0" * 3 + b"\x9d\x01\x2a" + width.to_bytes(2, "little") + height.to_bytes(2, "little")
    body += b"\0" * 16  # where the image data would go
    chunk = kind + len(body).to_bytes(4, "little") + body
    return b"RIFF" + (len(chunk) + 4).to_bytes(4, "little") + b"WEBP" + chunk


@pytest.mark.parametrize(
    ("data", "image_format", "size"),
    [
        (png(7, 3), "png", (7, 3)),
        (jpeg(640, 480), "jpeg", (640, 480)),
        (b"GIF89a" + (9000).to_bytes(2, "little") + (2).to_bytes(2, "little") + b"\0" * 8, "gif", (9000, 2)),
        (webp(b"VP8 ", 300, 200), "webp", (300, 200)),
        (webp(b"VP8L", 16000, 10), "webp", (16000, 10)),
        (webp(b"VP8X", 12000, 8000), "webp", (12000, 8000)),
        (webp(b"VP8X", 12000, 8000)[:26], "webp", None),
        (jpeg(640, 480)[:10], "jpeg", None),
    ],
)
def test_image_sizes_are_read_from_each_formats_header(data, image_format, size):
    assert image_size(data, image_format) == size
