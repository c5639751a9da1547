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


def test_create_points_the_client_at_the_url_and_keeps_its_settings(cognito):
    pool = cognito.create_user_pool(PoolName="relay-users")["UserPool"]["Id"]
    client = cognito.create_user_pool_client(
        UserPoolId=pool,
        ClientName="relay-page",
        AllowedOAuthFlows=["code"],
        AllowedOAuthScopes=["openid", "email"],
        AllowedOAuthFlowsUserPoolClient=True,
        SupportedIdentityProviders=["COGNITO"],
        CallbackURLs=["https://localhost/"],
        RefreshTokenValidity=12,
    )["UserPoolClient"]["ClientId"]
    answers = CloudFormation()
    try:
        response_url = f"http://127.0.0.1:{answers.server_address[1]}/answer"
        handler(event("Create", response_url, UserPoolId=pool, ClientId=client, Url=URL), client=cognito)
        handler(event("Delete", response_url, UserPoolId=pool, ClientId=client, Url=URL), client=cognito)
        handler(event("Create", response_url, UserPoolId=pool, ClientId="missing", Url=URL), client=cognito)
    finally:
        answers.shutdown()
    now = cognito.describe_user_pool_client(UserPoolId=pool, ClientId=client)["UserPoolClient"]
    assert now["CallbackURLs"] == [URL] and now["LogoutURLs"] == [URL]
    assert now["AllowedOAuthFlows"] == ["code"] and now["RefreshTokenValidity"] == 12
    assert [answer["Status"] for answer in answers.answers] == ["SUCCESS", "SUCCESS", "FAILED"]
    assert "ResourceNotFoundException" in answers.answers[-1]["Reason"]
    assert {answer["StackId"] for answer in answers.answers} == {event("Create", "")["StackId"]}
