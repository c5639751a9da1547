"""The custom resource that sends Cognito's sign-in back to the Function URL, on moto's Cognito over HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from moto.server import ThreadedMotoServer

from cognito.callbacks import handler
from tests.harness import OFFLINE_AWS_ENV

URL = "https://abc123.lambda-url.us-east-1.on.aws/"


@pytest.fixture(scope="module")
def cognito(monkeypatch_module) -> Iterator:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield boto3.client("cognito-idp", endpoint_url=f"http://{host}:{port}", region_name="us-east-1")
    server.stop()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in OFFLINE_AWS_ENV.items():
            patch.setenv(name, value)
        yield patch


class CloudFormation(ThreadingHTTPServer):
    """Takes the custom resource's answer, as CloudFormation's presigned ResponseURL does."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Answer)
        self.answers: list[dict] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _Answer(BaseHTTPRequestHandler):
    server: CloudFormation

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_PUT(self) -> None:
        self.server.answers.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def event(kind: str, response_url: str, **properties: str) -> dict:
    return {
        "RequestType": kind,
        "ResponseURL": response_url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/relay/1",
        "RequestId": "r1",
        "LogicalResourceId": "CognitoCallbacks",
        "ResourceProperties": properties,
    }


# What CloudFormation sends: every value a string.
SETTINGS = {
    "AllowedOAuthFlowsUserPoolClient": "true",
    "AllowedOAuthFlows": ["code"],
    "AllowedOAuthScopes": ["openid", "email"],
    "SupportedIdentityProviders": ["COGNITO"],
    "IdTokenValidity": "60",
    "TokenValidityUnits": {"IdToken": "minutes"},
}


class RecordingCognito:
    """Answers DescribeUserPoolClient as Cognito does, and records the UpdateUserPoolClient call."""

    def __init__(self) -> None:
        self.updates: list[dict] = []

    def describe_user_pool_client(self, UserPoolId: str, ClientId: str) -> dict:
        current = {"UserPoolId": UserPoolId, "ClientId": ClientId, "ClientName": "relay-page"}
        return {"UserPoolClient": {**current, "ReadAttributes": ["email"], "ClientSecret": "never-sent"}}

    def update_user_pool_client(self, **call: object) -> None:
        self.updates.append(call)


def test_the_update_carries_every_setting_typed_and_the_url_because_cognito_resets_the_rest():
    answers = CloudFormation()
    cognito = RecordingCognito()
    try:
        response_url = f"http://127.0.0.1:{answers.server_address[1]}/answer"
        props = {"UserPoolId": "pool", "ClientId": "client", "Url": URL, "Settings": SETTINGS}
        handler(event("Create", response_url, **props), client=cognito)
    finally:
        answers.shutdown()
    assert cognito.updates == [
        {
            "UserPoolId": "pool",
            "ClientId": "client",
            "ClientName": "relay-page",
            "ReadAttributes": ["email"],
            "AllowedOAuthFlowsUserPoolClient": True,
            "AllowedOAuthFlows": ["code"],
            "AllowedOAuthScopes": ["openid", "email"],
            "SupportedIdentityProviders": ["COGNITO"],
            "IdTokenValidity": 60,
            "TokenValidityUnits": {"IdToken": "minutes"},
            "CallbackURLs": [URL],
            "LogoutURLs": [URL],
        }
    ]
    assert [answer["Status"] for answer in answers.answers] == ["SUCCESS"]


def test_on_cognito_the_client_is_configured_and_failures_are_answered(cognito):
    pool = cognito.create_user_pool(PoolName="relay-users")["UserPool"]["Id"]
    client = cognito.create_user_pool_client(UserPoolId=pool, ClientName="relay-page")["UserPoolClient"]
    client_id = client["ClientId"]
    answers = CloudFormation()
    try:
        response_url = f"http://127.0.0.1:{answers.server_address[1]}/answer"
        props = {"UserPoolId": pool, "ClientId": client_id, "Url": URL, "Settings": SETTINGS}
        handler(event("Create", response_url, **props), client=cognito)
        handler(event("Delete", response_url, **props), client=cognito)
        handler(event("Create", response_url, **{**props, "ClientId": "missing"}), client=cognito)
    finally:
        answers.shutdown()
    now = cognito.describe_user_pool_client(UserPoolId=pool, ClientId=client_id)["UserPoolClient"]
    assert now["CallbackURLs"] == [URL] and now["LogoutURLs"] == [URL]
    assert now["AllowedOAuthFlows"] == ["code"] and now["AllowedOAuthFlowsUserPoolClient"] is True
    assert [answer["Status"] for answer in answers.answers] == ["SUCCESS", "SUCCESS", "FAILED"]
    assert "ResourceNotFoundException" in answers.answers[-1]["Reason"]
    assert {answer["StackId"] for answer in answers.answers} == {event("Create", "")["StackId"]}
