"""Streams one answer from the relay to stdout: `scripts/invoke STACK-OR-URL PROMPT [--format ...]`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .credentials import CredentialsError, load_credentials
from .diagnose import diagnose
from .endpoint import EndpointError, chat_url, function_url_region, url_from_stack

# The exit status of a self-test whose stream arrived in a lump: a deploy pipeline can stop on it.
BUFFERED = 3
FORMATS = {
    "text": "text/plain",
    "sse": "text/event-stream",
    "ndjson": "application/x-ndjson",
    "json": "application/json",
}


class InvokeError(RuntimeError):
    """The relay answered with an error status, or its stream ended in an error."""


def stream_failure(fmt: str, tail: bytes) -> str | None:
    """Return why a finished stream is not a complete answer, judged from its last bytes; None if it is."""
    lines = [line for line in tail.decode(errors="replace").splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if fmt == "text" and last.startswith("[error] "):
        return last
    if fmt == "sse" and not any(line.startswith("event: end") for line in lines[-2:]):
        return "the stream ended without an `end` event: " + last
    if fmt == "ndjson" and '"type":"end"' not in last:
        return "the stream ended without an `end` event: " + last
    return None


def signed_headers(
    url: str, body: bytes, headers: dict, credentials: Credentials, region: str, method: str = "POST"
) -> dict:
    """Return the headers plus a SigV4 signature for service `lambda`, as Function URLs with AWS_IAM need."""
    aws_request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(credentials, "lambda", region).add_auth(aws_request)
    return dict(aws_request.headers)


def bearer_headers(environ: dict) -> dict:
    """Return the sign-in header for a relay with AUTH_MODE on: RELAY_TOKEN (a JWT) or RELAY_API_KEY."""
    # Read from the environment, not the command line, where `ps` and shell history would show them.
    # Stripped: a key read from a file with CRLF ends would make an invalid header.
    token = environ.get("RELAY_TOKEN", "").strip()
    key = environ.get("RELAY_API_KEY", "").strip()
    if token:
        return {"Authorization": f"Bearer {token}"}
    if key:
        return {"X-Api-Key": key}
    return {}


def stream_chat(
    url: str,
    body: dict,
    accept: str = FORMATS["text"],
    credentials: Credentials | None = None,
    region: str | None = None,
    extra_headers: dict | None = None,
) -> Iterator[bytes]:
    """POST the request and yield the body's bytes as they arrive; signs when given credentials and region."""
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Accept": accept, **(extra_headers or {})}
    if credentials and region:
        headers = signed_headers(url, data, headers, credentials, region)
    # No read timeout: the relay sends heartbeats, and a stream may last 15 minutes.
    with requests.post(url, data=data, headers=headers, stream=True, timeout=(10, None)) as response:
        if response.status_code >= 400:
            raise InvokeError(f"HTTP {response.status_code}: {response.text.strip()}")
        yield from response.iter_content(chunk_size=None)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/invoke",
        description="Stream one answer from a deployed relay (signed with SigV4) or a local one (unsigned).",
        epilog="With RELAY_TOKEN (a JWT) or RELAY_API_KEY set, that is sent instead of a signature.",
    )
    parser.add_argument("target", help="a stack name (its FunctionUrl output is used) or a URL")
    parser.add_argument("prompt", nargs="?")
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="instead of a prompt, read GET /diag/stream and tell whether chunks arrive as sent "
        f"(exit {BUFFERED} when they do not)",
    )
    parser.add_argument("--seconds", type=int, default=5, help="with --diagnose: how long the self-test runs")
    parser.add_argument("--pad", type=int, default=0, help="with --diagnose: bytes of padding sent first")
    parser.add_argument("--format", choices=FORMATS, default="text", help="the answer's wire format")
    parser.add_argument("--model", help="a model id from the stack's AllowedModelIds")
    parser.add_argument("--region", help="the stack's region (default: your AWS configuration)")
    args = parser.parse_args(argv)
    if not args.diagnose and args.prompt is None:
        parser.error("a PROMPT is needed, or --diagnose")
    return args


def _diagnose(base: str, args: argparse.Namespace, sign_in: dict) -> int:
    """Run the streaming self-test against a relay and print its report; BUFFERED if it buffers."""
    url = f"{base.rstrip('/')}/diag/stream?seconds={args.seconds}&pad={args.pad}"
    region = None if sign_in else function_url_region(url)
    headers = {"Accept": "application/x-ndjson", **sign_in}
    if region:
        headers = signed_headers(url, b"", headers, load_credentials(), region, method="GET")
    report = diagnose(url, headers, timeout=args.seconds + 30)
    print(report.render(url.split("?")[0]))
    return BUFFERED if report.buffered else 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parse_args(argv)
    body = {"prompt": args.prompt, **({"modelId": args.model} if args.model else {})}
    try:
        base = args.target if "://" in args.target else url_from_stack(args.target, region=args.region)
        sign_in = bearer_headers(dict(os.environ))
        if args.diagnose:
            return _diagnose(base, args, sign_in)
        url = chat_url(base)
        # Only a Lambda Function URL with AuthType AWS_IAM checks signatures; one whose relay checks
        # a token or key itself has AuthType NONE, and a local relay has nothing to check them with.
        region = None if sign_in else function_url_region(url)
        credentials = load_credentials() if region else None
        tail = b""
        for chunk in stream_chat(url, body, FORMATS[args.format], credentials, region, sign_in):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            tail = (tail + chunk)[-4096:]
        failure = stream_failure(args.format, tail)
        if failure:
            raise InvokeError(failure)
    except requests.exceptions.InvalidHeader:
        # Its text would quote the header, token and all.
        print("error: RELAY_TOKEN or RELAY_API_KEY holds a character a header cannot carry", file=sys.stderr)
        return 1
    except (EndpointError, CredentialsError, InvokeError, requests.RequestException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (`| head`) has had enough: stop quietly, as other command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
