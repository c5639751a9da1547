"""Sign-in: JWTs from a local OIDC issuer and API keys, checked before anything reaches Bedrock."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jwt
import pytest
from bedrock_relay.api_keys import key_hash
from bedrock_relay.app import create_app

from tests.harness import ROOT, AppProcess, offline_env, start_app
from tests.issuer import CLIENT_ID, Issuer

KEY = "brk_test-key-for-the-ci-caller"
OTHER_KEY = "brk_a-key-nobody-configured"
BODY = {"prompt": "hi [standin tokens=3]"}


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    server = Issuer()
    server.new_key("RS256")
    server.new_key("ES256")
    yield server
    server.stop()


def kid_for(issuer: Issuer, algorithm: str) -> str:
    return next(kid for kid in issuer.published if issuer.algorithms[kid] == algorithm)


@pytest.fixture(scope="module")
def auth_app(standin, issuer) -> Iterator[AppProcess]:
    """The app as Lambda runs it, with both modes on."""
    app = start_app(
        standin.url,
        AUTH_MODE="jwt,api_key",
        JWT_ISSUER=issuer.url,
        JWT_AUDIENCE=CLIENT_ID,
        API_KEY_HASHES=f"ci:{key_hash(KEY)}",
        BEDROCK_MAX_ATTEMPTS="1",
    )
    yield app
    app.stop()


def in_process(issuer: Issuer, **config):
    """The app in this process, for refusals: Bedrock is never reached, so a dummy client will do."""
    settings = {
        "auth_modes": ("jwt", "api_key"),
        "jwt_issuer": issuer.url,
        "jwt_audience": (CLIENT_ID,),
        "api_key_hashes": (("ci", key_hash(KEY)),),
        **config,
    }
    return create_app({"BEDROCK_CLIENT": object(), **settings})


def post(app, token: str | None = None, headers: dict | None = None, path: str = "/chat"):
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    # An empty body: a request let in gets 400 invalid_json, one refused gets 401, 403 or 503.
    return app.test_client().post(path, data="", headers=sent)


def assert_refused(response, status: int, code: str, bearer_error: str | None = "invalid_token") -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.json["error"]["code"] == code
    challenge = response.headers.get("WWW-Authenticate", "")
    if status in (401, 403):
        assert challenge.startswith('Bearer realm="bedrock-relay"')
        if bearer_error:
            assert f'error="{bearer_error}"' in challenge
        else:
            assert "error=" not in challenge


def let_in(response) -> bool:
    return response.status_code == 400 and response.json["error"]["code"] == "invalid_json"


def test_valid_rs256_and_es256_tokens_stream_and_the_log_names_the_subject(auth_app, issuer):
    for algorithm in ("RS256", "ES256"):
        token = issuer.token(kid_for(issuer, algorithm), sub=f"user-{algorithm}")
        response = httpx.post(f"{auth_app.url}/chat", json=BODY, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200 and len(response.text.split()) == 3
        record = auth_app.log_for(response.headers["x-request-id"])
        assert (record["authMethod"], record["principal"]) == ("jwt", f"user-{algorithm}")
        assert token not in auth_app.log_path.read_text()


def test_an_api_key_streams_in_either_header(auth_app):
    for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-Api-Key": KEY}):
        response = httpx.post(f"{auth_app.url}/chat", json=BODY, headers=headers)
        assert response.status_code == 200
        record = auth_app.log_for(response.headers["x-request-id"])
        assert (record["authMethod"], record["principal"]) == ("api_key", "ci")
    assert KEY not in auth_app.log_path.read_text()


def test_an_oversized_token_gets_the_apps_json_refusal_through_the_server(auth_app):
    response = httpx.post(
        f"{auth_app.url}/chat", json=BODY, headers={"Authorization": "Bearer a." + "x" * 16_000 + ".b"}
    )
    assert response.status_code == 401 and response.json()["error"]["code"] == "malformed_token"
    assert "longer than 8192 bytes" in response.json()["error"]["message"]


def test_a_refused_request_never_reaches_bedrock(auth_app, standin):
    label = uuid.uuid4().hex[:12]
    body = {"prompt": f"[standin id={label}]"}
    for headers in ({}, {"Authorization": "Bearer not.a.token"}, {"X-Api-Key": OTHER_KEY}):
        response = httpx.post(f"{auth_app.url}/chat", json=body, headers=headers)
        assert response.status_code == 401
        record = auth_app.log_for(response.headers["x-request-id"])
        assert record["outcome"] == "rejected" and record["status"] == 401
    assert not [r for r in standin.records if r.scenario["id"] == label]


def test_health_the_page_its_config_and_preflights_stay_open(auth_app, issuer):
    assert httpx.get(f"{auth_app.url}/healthz").status_code == 200
    assert httpx.get(f"{auth_app.url}/").status_code == 200
    assert httpx.get(f"{auth_app.url}/static/chat.js").status_code == 200
    config = httpx.get(f"{auth_app.url}/config").json()["auth"]
    assert config == {
        "modes": ["jwt", "api_key"],
        "issuer": issuer.url,
        "clientId": CLIENT_ID,
        "scopes": "openid email profile",
        "requiredScope": None,
    }
    preflight = {"Origin": "http://127.0.0.1:1", "Access-Control-Request-Method": "POST"}
    assert httpx.options(f"{auth_app.url}/chat", headers=preflight).status_code == 200


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _public_pem(issuer: Issuer, kid: str) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return (
        issuer.private[kid]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def forged_tokens(issuer: Issuer) -> dict[str, tuple[str, int, str]]:
    """Each bad token, with the status and reason it must be refused with."""
    rs = kid_for(issuer, "RS256")
    now = int(time.time())
    header, payload, signature = issuer.token(rs).split(".")
    claims = jwt.decode(issuer.token(rs), options={"verify_signature": False})
    tampered = f"{header}.{_b64({**claims, 'sub': 'admin'})}.{signature}"
    unsigned = f"{_b64({'alg': 'none', 'kid': rs, 'typ': 'JWT'})}.{payload}."
    # The classic confusion: HS256 "signed" with the public key, which anyone can fetch.
    signed_part = f"{_b64({'alg': 'HS256', 'kid': rs, 'typ': 'JWT'})}.{payload}"
    mac = hmac.new(_public_pem(issuer, rs), signed_part.encode(), hashlib.sha256).digest()
    hs256 = f"{signed_part}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    hidden = issuer.new_key("RS256", publish=False)
    return {
        "expired": (issuer.token(rs, exp=now - 3600, iat=now - 7200), 401, "token_expired"),
        "not yet valid": (issuer.token(rs, nbf=now + 3600), 401, "token_not_yet_valid"),
        "wrong issuer": (issuer.token(rs, iss="https://elsewhere.example"), 401, "wrong_issuer"),
        "wrong audience": (issuer.token(rs, aud="another-client"), 401, "wrong_audience"),
        "access token for another client": (
            issuer.token(rs, aud=None, token_use="access", client_id="another-client"),
            401,
            "wrong_audience",
        ),
        "tampered payload": (tampered, 401, "bad_signature"),
        "alg none": (unsigned, 401, "bad_algorithm"),
        "HS256 with the public key": (hs256, 401, "bad_algorithm"),
        "unknown key id": (issuer.token(hidden), 401, "unknown_key_id"),
        "no exp": (issuer.token(rs, exp=None), 401, "malformed_token"),
        "16 KB long": (issuer.token(rs, padding="x" * 16_000), 401, "malformed_token"),
        "not a JWT": ("a.b.c", 401, "malformed_token"),
    }


def test_each_bad_token_is_refused_with_its_reason(issuer):
    app = in_process(issuer)
    for name, (token, status, code) in forged_tokens(issuer).items():
        response = post(app, token)
        assert_refused(response, status, code)
        assert token not in response.get_data(as_text=True), name


def test_missing_credentials_get_a_challenge_without_an_error(issuer):
    app = in_process(issuer)
    assert_refused(post(app), 401, "missing_credentials", bearer_error=None)
    assert_refused(
        post(app, headers={"Authorization": "Basic dXNlcjpwYXNz"}), 401, "missing_credentials", None
    )
    # A token in the query string is never read.
    token = issuer.token(kid_for(issuer, "RS256"))
    assert_refused(post(app, path=f"/chat?access_token={token}"), 401, "missing_credentials", None)


def test_cognito_access_and_id_tokens_are_both_accepted(issuer):
    app = in_process(issuer)
    rs = kid_for(issuer, "RS256")
    assert let_in(post(app, issuer.token(rs, aud=None, token_use="access", client_id=CLIENT_ID)))
    assert let_in(post(app, issuer.token(rs, token_use="id")))
    assert let_in(post(app, issuer.token(rs, aud=["other", CLIENT_ID])))
    assert_refused(post(app, issuer.token(rs, token_use="refresh")), 401, "wrong_audience")


def test_a_token_without_the_required_scope_is_forbidden(issuer):
    app = in_process(issuer, jwt_required_scope="relay/chat")
    rs = kid_for(issuer, "RS256")
    assert_refused(
        post(app, issuer.token(rs, scope="openid")), 403, "insufficient_scope", "insufficient_scope"
    )
    assert let_in(post(app, issuer.token(rs, scope="openid relay/chat")))
    assert let_in(post(app, issuer.token(rs, scp=["relay/chat"])))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_rotated_key_is_picked_up_but_made_up_key_ids_cannot_hammer_the_issuer(issuer):
    app = in_process(issuer)
    clock = app.extensions["auth"].tokens.keys.clock = Clock()
    assert let_in(post(app, issuer.token(kid_for(issuer, "RS256"))))
    fetches = issuer.jwks_fetches
    for _ in range(20):
        fake = issuer.token(kid_for(issuer, "RS256"), headers={"kid": uuid.uuid4().hex})
        assert_refused(post(app, fake), 401, "unknown_key_id")
    assert issuer.jwks_fetches == fetches
    rotated = issuer.new_key("RS256")
    clock.now += 31
    assert let_in(post(app, issuer.token(rotated)))


def test_an_unreachable_issuer_is_503_not_401(issuer):
    rs = kid_for(issuer, "RS256")
    cold = in_process(issuer)
    warm = in_process(issuer)
    clock = warm.extensions["auth"].tokens.keys.clock = Clock()
    assert let_in(post(warm, issuer.token(rs)))
    issuer.up = False
    try:
        assert_refused(post(cold, issuer.token(rs)), 503, "auth_unavailable")
        # Cached keys still verify; a key id the cache lacks cannot be checked, so 503 again.
        assert let_in(post(warm, issuer.token(rs)))
        clock.now += 31
        response = post(warm, issuer.token(issuer.new_key("RS256")))
        assert_refused(response, 503, "auth_unavailable")
        assert response.headers["Retry-After"]
    finally:
        issuer.up = True


def test_a_key_verifies_only_the_algorithms_it_may_use(issuer):
    app = in_process(issuer)
    declared = kid_for(issuer, "RS256")
    undeclared = issuer.new_key("RS256", declare=False)
    p256 = kid_for(issuer, "ES256")
    p384 = issuer.new_key("ES384")
    # A key that names RS256 verifies nothing else; one that names nothing, any RSA algorithm.
    assert_refused(post(app, issuer.token(declared, algorithm="PS256")), 401, "bad_algorithm")
    assert let_in(post(app, issuer.token(undeclared, algorithm="PS256")))
    assert let_in(post(app, issuer.token(undeclared, algorithm="RS384")))
    assert let_in(post(app, issuer.token(p384)))
    # ES384 under the id of a P-256 key: refused before any signature is checked.
    assert_refused(post(app, issuer.token(p384, headers={"kid": p256})), 401, "bad_algorithm")
    assert_refused(post(app, issuer.token(declared, headers={"kid": p256})), 401, "bad_algorithm")


def test_claims_of_the_wrong_type_are_malformed_not_a_crash(issuer):
    app = in_process(issuer, jwt_required_scope="chat")
    rs = kid_for(issuer, "RS256")
    for claims in ({"aud": {"x": 1}}, {"aud": [CLIENT_ID, 5]}, {"aud": None, "client_id": {"id": CLIENT_ID}}):
        assert_refused(post(app, issuer.token(rs, **claims)), 401, "malformed_token")
    assert_refused(post(app, issuer.token(rs, scope=5)), 401, "malformed_token")


def test_many_requests_at_a_cold_start_fetch_the_keys_once(issuer):
    app = in_process(issuer)
    token = issuer.token(kid_for(issuer, "ES256"))
    fetches = issuer.jwks_fetches
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: let_in(post(app, token)), range(32)))
    assert all(results) and issuer.jwks_fetches == fetches + 1


def test_after_a_failed_fetch_the_issuer_is_tried_again_soon(issuer):
    app = in_process(issuer)
    clock = app.extensions["auth"].tokens.keys.clock = Clock()
    token = issuer.token(kid_for(issuer, "RS256"))
    issuer.up = False
    try:
        assert_refused(post(app, token), 503, "auth_unavailable")
    finally:
        issuer.up = True
    clock.now += 3  # not the 30 s that a successful fetch waits
    assert let_in(post(app, token))


def test_a_discovery_document_naming_another_issuer_is_not_trusted(issuer):
    app = in_process(issuer)
    issuer.named_issuer = "https://impostor.example"
    try:
        assert_refused(post(app, issuer.token(kid_for(issuer, "RS256"))), 503, "auth_unavailable")
    finally:
        issuer.named_issuer = None


def test_a_bad_api_key_is_refused_even_beside_a_valid_token(issuer):
    token = issuer.token(kid_for(issuer, "RS256"))
    both = post(in_process(issuer), token, headers={"X-Api-Key": OTHER_KEY})
    assert_refused(both, 401, "unknown_api_key")


def test_api_keys_unknown_revoked_and_ignored_where_the_mode_is_off(issuer):
    app = in_process(issuer)
    assert let_in(post(app, headers={"X-Api-Key": KEY}))
    assert_refused(post(app, headers={"X-Api-Key": OTHER_KEY}), 401, "unknown_api_key")
    revoked = in_process(issuer, api_key_hashes=(("other", key_hash(OTHER_KEY)),))
    assert_refused(post(revoked, KEY), 401, "unknown_api_key")
    jwt_only = in_process(issuer, auth_modes=("jwt",), api_key_hashes=())
    assert_refused(post(jwt_only, headers={"X-Api-Key": KEY}), 401, "missing_credentials", None)


def test_new_api_key_prints_a_key_and_the_entry_that_lets_it_in(issuer):
    done = subprocess.run([str(ROOT / "scripts" / "new-api-key"), "ci-bot"], capture_output=True, text=True)
    assert done.returncode == 0
    key = re.search(r"^\s+(brk_\S+)$", done.stdout, re.MULTILINE).group(1)
    name, digest = re.search(r"^\s+(ci-bot):([0-9a-f]{64})$", done.stdout, re.MULTILINE).groups()
    assert len(key) > 40
    app = in_process(issuer, auth_modes=("api_key",), api_key_hashes=((name, digest),))
    assert let_in(post(app, headers={"X-Api-Key": key}))


IMPORTED = """
import sys
from bedrock_relay.app import create_app
create_app({"BEDROCK_CLIENT": object()})
print(sorted(name for name in ("jwt", "cryptography", "bedrock_relay.auth") if name in sys.modules))
"""


@pytest.mark.parametrize(
    ("env", "imported"),
    [
        ({}, []),
        ({"AUTH_MODE": "api_key", "API_KEY_HASHES": f"ci:{key_hash(KEY)}"}, ["bedrock_relay.auth"]),
        (
            {"AUTH_MODE": "jwt", "JWT_ISSUER": "https://id.example", "JWT_AUDIENCE": "c"},
            ["bedrock_relay.auth", "cryptography", "jwt"],
        ),
    ],
)
def test_sign_in_costs_no_import_unless_its_mode_is_on(env, imported):
    done = subprocess.run(
        [sys.executable, "-c", IMPORTED],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "function"), **env},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.replace("'", '"')) == imported


def run_client(command: list[str], url: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**offline_env("http://127.0.0.1:9"), "PYTHONPATH": os.pathsep.join(sys.path), **env}
    return subprocess.run([*command, url, "Hi"], env=environ, capture_output=True, text=True, timeout=60)


def test_scripts_invoke_and_the_example_send_a_token_or_key_from_the_environment(auth_app, issuer):
    token = issuer.token(kid_for(issuer, "RS256"))
    invoke = [str(ROOT / "scripts" / "invoke")]
    example = [sys.executable, str(ROOT / "examples" / "stream_chat.py")]
    for command in (invoke, example):
        for env in ({"RELAY_TOKEN": token}, {"RELAY_API_KEY": KEY}):
            done = run_client(command, auth_app.url, **env)
            assert done.returncode == 0, done.stderr
            assert len(done.stdout.split()) == 20
        refused = run_client(command, auth_app.url)
        assert refused.returncode == 1 and "HTTP 401" in refused.stderr


class _Odd(BaseHTTPRequestHandler):
    """An issuer gone wrong: a redirect, a huge document."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/small")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b'{"keys": []}' if self.path == "/small" else b'{"keys": "' + b"x" * (2 << 20) + b'"}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_key_documents_are_fetched_without_redirects_within_a_size_limit():
    from bedrock_relay.jwks import fetch_json

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Odd)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert fetch_json(f"{base}/small", time.monotonic() + 5) == {"keys": []}
        with pytest.raises(OSError):
            fetch_json(f"{base}/redirect", time.monotonic() + 5)
        with pytest.raises(ValueError, match="larger than 1 MB"):
            fetch_json(f"{base}/huge", time.monotonic() + 5)
        with pytest.raises(ValueError, match="https"):
            fetch_json("file:///etc/passwd", time.monotonic() + 5)
    finally:
        server.shutdown()


def test_a_credential_a_header_cannot_carry_is_refused_without_printing_it(auth_app):
    secret = "eyJsecret.pay\nload.sig"
    done = run_client([str(ROOT / "scripts" / "invoke")], auth_app.url, RELAY_TOKEN=secret)
    assert done.returncode == 1 and "cannot carry" in done.stderr
    assert "eyJsecret" not in done.stderr + done.stdout
    # A trailing CRLF, as from a file written on Windows, is only trimmed.
    done = run_client([str(ROOT / "scripts" / "invoke")], auth_app.url, RELAY_API_KEY=KEY + "\r\n")
    assert done.returncode == 0, done.stderr
