"""The Bedrock boundary: client settings that keep long streams alive, and retries of the first call only."""

from __future__ import annotations

import uuid

from bedrock_relay.bedrock import make_client
from bedrock_relay.settings import Settings, from_env

from tests.harness import OFFLINE_AWS_ENV


def test_client_defaults_outlast_botocores_60s_read_timeout(monkeypatch):
    for name, value in OFFLINE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    config = make_client(Settings()).meta.config
    assert config.read_timeout == 900
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}


def test_settings_come_from_the_environment():
    settings = from_env({"MODEL_ID": "m1", "ALLOWED_MODEL_IDS": "m1, m2", "HEARTBEAT_SECONDS": "2.5"})
    assert settings.allowed_model_ids == ("m1", "m2")
    assert settings.heartbeat_seconds == 2.5
    assert from_env({"MODEL_ID": "solo"}).allowed_model_ids == ("solo",)
    assert Settings().with_overrides({"model_id": "other"}).allowed_model_ids == ("other",)


def test_one_attempt_means_one_call_to_bedrock(client, standin):
    label = uuid.uuid4().hex[:12]
    response = client.post(
        "/chat", json={"prompt": f"[standin error=ServiceUnavailableException id={label}]"}
    )
    assert response.status_code == 503
    assert len([r for r in standin.records if r.scenario["id"] == label]) == 1
