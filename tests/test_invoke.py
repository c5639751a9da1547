"""relay_client and scripts/invoke: the URL from a stack (moto), credentials, signing and streaming."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from moto import mock_aws

from relay_client import invoke
from relay_client.credentials import CredentialsError, load_credentials
from relay_client.endpoint import EndpointError, chat_url, function_url_region, url_from_stack
from tests.harness import OFFLINE_AWS_ENV, ROOT, AppProcess, offline_env

DEPLOYED_URL = "https://abcdefghijklmnop.lambda-url.eu-west-1.on.aws/"


def _stack_template(url: str) -> str:
    """A stack with the same FunctionUrl output as template.yaml, and one resource moto can create."""
    return json.dumps(
        {
            "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {"FunctionUrl": {"Description": "The streaming URL", "Value": url}},
        }
    )


@pytest.fixture
def aws() -> Iterator[None]:
    """moto's CloudFormation, with dummy credentials."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in OFFLINE_AWS_ENV.items():
            patch.setenv(name, value)
        with mock_aws():
            yield


def _create_stack(name: str, url: str) -> None:
    boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=_stack_template(url))


def test_url_comes_from_the_stack_output(aws):
    _create_stack("relay", DEPLOYED_URL)
    assert url_from_stack("relay") == DEPLOYED_URL


def test_a_missing_stack_or_output_is_an_error_that_says_which(aws):
    with pytest.raises(EndpointError, match="cannot read stack 'absent'"):
        url_from_stack("absent")
    boto3.client("cloudformation").create_stack(
        StackName="other", TemplateBody=json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}})
    )
    with pytest.raises(EndpointError, match="has no FunctionUrl output"):
        url_from_stack("other")


def test_only_function_urls_have_a_region_to_sign_for():
    assert function_url_region(DEPLOYED_URL) == "eu-west-1"
    assert function_url_region("http://127.0.0.1:8080") is None
    assert function_url_region("https://evil.example.com/x.lambda-url.us-east-1.on.aws") is None


def test_chat_url_appends_the_path_only_to_a_base_url():
    assert chat_url(DEPLOYED_URL) == DEPLOYED_URL + "chat"
    assert chat_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080/chat"
    assert chat_url("http://127.0.0.1:8080/chat") == "http://127.0.0.1:8080/chat"


def test_credentials_come_from_the_environment_first():
    credentials = load_credentials(
        {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "secret"}, "/nonexistent"
    )
    assert (credentials.access_key, credentials.secret_key, credentials.token) == ("AKID", "secret", None)


def _fake_aws_cli(tmp_path: Path, script: str) -> str:
    cli = tmp_path / "aws"
    cli.write_text(f"#!/bin/sh\n{script}\n")
    cli.chmod(0o755)
    return str(cli)


def test_credentials_otherwise_come_from_the_aws_cli(tmp_path: Path):
    exported = {"Version": 1, "AccessKeyId": "ASIA", "SecretAccessKey": "s", "SessionToken": "t"}
    expected_args = "configure export-credentials --format process"
    cli = _fake_aws_cli(tmp_path, f'[ "$*" = "{expected_args}" ] || exit 3\necho \'{json.dumps(exported)}\'')
    credentials = load_credentials({"AWS_PROFILE": "dev"}, cli)
    assert (credentials.access_key, credentials.secret_key, credentials.token) == ("ASIA", "s", "t")


def test_no_credentials_is_an_error_a_user_can_act_on(tmp_path: Path):
    with pytest.raises(CredentialsError, match="install the AWS CLI"):
        load_credentials({}, str(tmp_path / "missing"))
    cli = _fake_aws_cli(tmp_path, "echo 'The SSO session has expired' >&2; exit 255")
    with pytest.raises(CredentialsError, match="SSO session has expired"):
        load_credentials({}, cli)


def test_signature_is_sigv4_for_the_lambda_service():
    credentials = Credentials("AKID", "secret", "token")
    headers = invoke.signed_headers(
        DEPLOYED_URL + "chat", b"{}", {"Accept": "text/plain"}, credentials, "eu-west-1"
    )
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKID/")
    assert "/eu-west-1/lambda/aws4_request" in headers["Authorization"]
    assert headers["X-Amz-Security-Token"] == "token"
    assert headers["Accept"] == "text/plain"


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_stream_chat_yields_the_answer_as_it_arrives(app: AppProcess, signed: bool):
    credentials = Credentials("testing", "testing") if signed else None
    chunks = list(
        invoke.stream_chat(app.url + "/chat", {"prompt": "Hi"}, credentials=credentials, region="us-east-1")
    )
    assert len(chunks) > 1
    assert len(b"".join(chunks).decode().split()) == 20


def test_main_streams_from_the_url_in_a_stacks_outputs(aws, app: AppProcess, capsysbinary):
    _create_stack("local", app.url + "/")
    assert invoke.main(["local", "Hi", "--format", "ndjson"]) == 0
    lines = [json.loads(line) for line in capsysbinary.readouterr().out.splitlines()]
    assert lines[-1]["type"] == "end"


def test_scripts_invoke_streams_from_the_local_url(app: AppProcess):
    done = _run_invoke(app.url, "Hi")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.split()) == 20


def test_scripts_invoke_reports_an_error_status(app: AppProcess):
    done = _run_invoke(app.url, "Hi", "--model", "not-allowed")
    assert done.returncode == 1
    assert done.stderr.startswith("error: HTTP 400")


@pytest.mark.parametrize("fmt", ["text", "sse", "ndjson"])
def test_scripts_invoke_fails_when_the_stream_ends_in_an_error(app: AppProcess, fmt: str):
    done = _run_invoke(app.url, "[standin stream_error=modelStreamErrorException after=2]", "--format", fmt)
    assert done.returncode == 1
    assert "error: " in done.stderr and "modelStreamErrorException" in done.stdout + done.stderr


def test_a_missing_region_is_an_error_a_user_can_act_on(aws, monkeypatch):
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(EndpointError, match="--region"):
        url_from_stack("any")


def _expected_signature(url: str, body: bytes, headers: dict, credentials: Credentials) -> str:
    """Recompute the signature as the receiving end does, from what arrived."""
    signed = headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    received = AWSRequest(
        method="POST", url=url, data=body, headers={k: v for k, v in headers.items() if k.lower() in signed}
    )
    received.context["timestamp"] = headers["X-Amz-Date"]
    auth = SigV4Auth(credentials, "lambda", "eu-west-1")
    return auth.signature(auth.string_to_sign(received, auth.canonical_request(received)), received)


def test_the_signature_verifies_at_the_receiving_end_and_covers_the_body():
    credentials = Credentials("AKID", "secret", "token")
    url, body = DEPLOYED_URL + "chat", b'{"prompt":"Hi"}'
    headers = invoke.signed_headers(url, body, {"Content-Type": "application/json"}, credentials, "eu-west-1")
    signature = headers["Authorization"].split("Signature=")[1]
    assert _expected_signature(url, body, headers, credentials) == signature
    assert _expected_signature(url, b'{"prompt":"Ho"}', headers, credentials) != signature


def _run_invoke(*args: str) -> subprocess.CompletedProcess:
    # The stand-in's URL is irrelevant here: the script talks to the app, not to Bedrock.
    env = offline_env("http://127.0.0.1:9")
    return subprocess.run(
        [str(ROOT / "scripts" / "invoke"), *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_python_client_example_streams_with_signed_requests(app: AppProcess):
    env = {**offline_env("http://127.0.0.1:9"), "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "stream_chat.py"), app.url, "Hi"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.split()) == 20


def test_scripts_invoke_stops_quietly_when_its_reader_closes_the_pipe(app: AppProcess):
    env = offline_env("http://127.0.0.1:9")
    command = f"'{ROOT / 'scripts' / 'invoke'}' {app.url} '[standin tokens=400 tps=0]' | head -c 20"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], env=env, capture_output=True, text=True, timeout=60
    )
    assert len(done.stdout) == 20
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
