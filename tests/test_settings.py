"""Settings come from the environment, each named once; the server listens on loopback unless told."""

from __future__ import annotations

import runpy
import subprocess

import pytest
from bedrock_relay.settings import Settings, SettingsError, env_names, from_env

from tests.harness import RUN_SH, free_port, offline_env, start_app


def test_settings_come_from_the_environment():
    settings = from_env({"MODEL_ID": "m1", "ALLOWED_MODEL_IDS": "m1, m2", "HEARTBEAT_SECONDS": "2.5"})
    assert settings.allowed_model_ids == ("m1", "m2")
    assert settings.heartbeat_seconds == 2.5
    assert from_env({"MODEL_ID": "solo"}).allowed_model_ids == ("solo",)
    assert Settings().with_overrides({"model_id": "other"}).allowed_model_ids == ("other",)


@pytest.mark.parametrize(
    ("environ", "words"),
    [
        ({"HEARTBEAT_SECONDS": "soon"}, "HEARTBEAT_SECONDS must be a number, got 'soon'"),
        ({"MAX_TOKENS_LIMIT": "0"}, "MAX_TOKENS_LIMIT must be greater than 0"),
        ({"PORT": "70000"}, "PORT must be a port number"),
        ({"MODEL_ID": "a", "ALLOWED_MODEL_IDS": "b"}, "MODEL_ID 'a' is not in ALLOWED_MODEL_IDS"),
        ({"AUTH_MODE": "oauth"}, "AUTH_MODE must be none, jwt, api_key or jwt,api_key"),
        ({"AUTH_MODE": "jwt", "JWT_ISSUER": "https://id.example"}, "needs JWT_ISSUER and JWT_AUDIENCE"),
        ({"AUTH_MODE": "api_key"}, "needs API_KEY_HASHES"),
        ({"JWT_ISSUER": "http://id.example"}, "JWT_ISSUER must be an https:// URL"),
        ({"JWT_LEEWAY_SECONDS": "inf"}, "JWT_LEEWAY_SECONDS must be between 0 and 300 seconds"),
        ({"GUARDRAIL_STREAM_MODE": "fast"}, "GUARDRAIL_STREAM_MODE must be sync or async, got 'fast'"),
        ({"GUARDRAIL_TRACE": "maybe"}, "GUARDRAIL_TRACE must be true or false, got 'maybe'"),
    ],
)
def test_a_bad_setting_is_refused_by_name(environ, words):
    with pytest.raises(SettingsError, match=words):
        from_env(environ)


def test_a_bad_api_key_entry_is_refused_without_echoing_it():
    with pytest.raises(SettingsError) as refused:
        from_env({"API_KEY_HASHES": "ci:brk_a-key-pasted-by-mistake"})
    assert "brk_a-key-pasted-by-mistake" not in str(refused.value)
    entry = "ci:" + "Ab" * 32
    assert from_env({"API_KEY_HASHES": entry}).api_key_hashes == (("ci", "ab" * 32),)


def test_auth_is_off_unless_a_mode_is_named():
    assert from_env({}).auth_modes == () and from_env({"AUTH_MODE": "none"}).auth_modes == ()
    both = {"AUTH_MODE": "JWT, api_key", "JWT_ISSUER": "https://id.example/", "JWT_AUDIENCE": "c"}
    settings = from_env({**both, "API_KEY_HASHES": "ci:" + "0" * 64})
    # The issuer is kept as written: a token's `iss` must match it exactly, trailing slash and all.
    assert settings.auth_modes == ("jwt", "api_key") and settings.jwt_issuer == "https://id.example/"


def test_the_server_listens_where_lwa_looks_and_on_loopback_by_default():
    assert from_env({}).bind == "127.0.0.1:8080"
    assert from_env({"AWS_LWA_PORT": "9000", "PORT": "9001"}).bind == "127.0.0.1:9000"
    assert from_env({"PORT": "9001"}).bind == "127.0.0.1:9001"
    assert from_env({"LISTEN_HOST": "0.0.0.0"}).bind == "0.0.0.0:8080"
    assert from_env({"LISTEN_HOST": "::1"}).bind == "[::1]:8080"


def test_every_variable_is_named_once():
    assert {"MODEL_ID", "LISTEN_HOST", "PORT", "AWS_LWA_PORT", "WEB_THREADS"} <= env_names()


def test_the_started_app_listens_on_loopback_only(standin):
    app = start_app(standin.url, LOG_LEVEL="info")
    try:
        port = app.url.rsplit(":", 1)[1]
        assert f"Listening at: http://127.0.0.1:{port}" in app.log_path.read_text()
    finally:
        app.stop()


def test_a_bad_setting_stops_the_server_with_one_line_naming_it():
    env = offline_env("http://127.0.0.1:9", PORT=str(free_port()), HEARTBEAT_SECONDS="soon")
    done = subprocess.run([str(RUN_SH)], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert done.stderr.strip() == "error: HEARTBEAT_SECONDS must be a number, got 'soon'"


@pytest.mark.parametrize(("initialization", "timeout"), [("snap-start", 0), ("on-demand", 30), ("", 30)])
def test_a_snapstart_restore_is_not_taken_for_a_hung_worker(monkeypatch, initialization, timeout):
    # A restore may come days after the snapshot; the arbiter's heartbeat check would see that gap.
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", initialization)
    assert runpy.run_path(str(RUN_SH.parent / "gunicorn.conf.py"))["timeout"] == timeout
