"""The page's files are served with explicit types, and CORS headers appear only when opted in."""

from __future__ import annotations

import pytest
from bedrock_relay import static
from bedrock_relay.app import create_app

ORIGIN = "http://127.0.0.1:9999"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}


def make_client(**config):
    # /chat requests here fail validation, so the Bedrock client is never called.
    return create_app({"BEDROCK_CLIENT": object(), **config}).test_client()


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/", "text/html; charset=utf-8"),
        ("/static/stream-chat.js", "text/javascript; charset=utf-8"),
        ("/static/chat.js", "text/javascript; charset=utf-8"),
        ("/static/chat.css", "text/css; charset=utf-8"),
    ],
)
def test_page_files_are_served_with_their_type_and_a_body(path, content_type):
    response = make_client().get(path)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "max-age=" in response.headers["Cache-Control"]
    assert response.data


def test_page_files_never_answer_304_with_an_empty_body():
    client = make_client()
    first = client.get("/static/chat.js")
    # Both validators match anything, so a server honouring them would answer 304.
    conditional = {"If-Modified-Since": "Wed, 01 Jan 2098 00:00:00 GMT", "If-None-Match": "*"}
    again = client.get("/static/chat.js", headers=conditional)
    assert again.status_code == 200
    assert again.data == first.data


def test_the_page_loads_nothing_from_another_origin():
    page = make_client().get("/").get_data(as_text=True)
    assert "http://" not in page
    assert "https://" not in page


@pytest.mark.parametrize(
    "path",
    [
        "/static/missing.js",
        "/static/../bedrock_relay/app.py",
        "/static/%2e%2e/run.sh",
        "/static/x.py",
        # Allowed types, so only the path check stands between these and the file.
        "/static/%2e%2e/static/index.html",
        "/static/..%2f..%2fREADME.html",
    ],
)
def test_unknown_or_outside_files_are_404_json(path):
    response = make_client().get(path)
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


@pytest.mark.parametrize("path", ["/static/%2e%2e/outside.html", "/static/..%2foutside.html"])
def test_an_allowed_file_just_outside_the_static_folder_is_not_served(path, tmp_path, monkeypatch):
    inside = tmp_path / "static"
    inside.mkdir()
    (inside / "index.html").write_text("inside")
    (tmp_path / "outside.html").write_text("outside")
    monkeypatch.setattr(static, "STATIC_DIR", inside)
    client = make_client()
    assert client.get("/static/index.html").data == b"inside"
    response = client.get(path)
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


def test_without_the_setting_no_cors_headers_are_added():
    client = make_client()
    chat = client.post("/chat", data="{}", headers={"Origin": ORIGIN})
    preflight = client.options("/chat", headers=PREFLIGHT)
    for response in (chat, preflight):
        assert not [name for name, _ in response.headers if name.lower().startswith("access-control-")]


def test_an_allowed_origin_gets_cors_headers_and_the_request_id():
    client = make_client(cors_allow_origins=(ORIGIN,))
    preflight = client.options("/chat", headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    allowed_headers = preflight.headers["Access-Control-Allow-Headers"].lower()
    # Authorization: for streamChat's `headers` option, e.g. a bearer token.
    expected = {"content-type", "accept", "authorization", "x-api-key", "cache-control"}
    assert expected <= {h.strip() for h in allowed_headers.split(",")}
    refused = client.post("/chat", data="{}", headers={"Origin": ORIGIN})
    assert refused.status_code == 400
    assert refused.headers["Access-Control-Allow-Origin"] == ORIGIN
    # The request id, and the sign-in challenge a page needs to tell why it was refused.
    exposed = {"X-Request-Id", "X-Stream-Id", "X-Conversation-Id", "X-Answer-Cache"}
    exposed |= {"WWW-Authenticate", "Retry-After", "X-Should-Retry"}
    assert set(refused.headers["Access-Control-Expose-Headers"].split(", ")) == exposed
    assert "Origin" in refused.headers["Vary"]


def test_an_origin_not_in_the_list_gets_no_cors_headers():
    client = make_client(cors_allow_origins=(ORIGIN,))
    response = client.options("/chat", headers={**PREFLIGHT, "Origin": "http://127.0.0.1:1"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_a_star_allows_any_origin():
    response = make_client(cors_allow_origins=("*",)).options("/chat", headers=PREFLIGHT)
    assert response.headers["Access-Control-Allow-Origin"] == "*"
