"""Where the relay lives: a URL given directly, or the FunctionUrl output of a CloudFormation stack."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.exceptions import BotoCoreError, ClientError

URL_OUTPUT = "FunctionUrl"
_FUNCTION_URL_HOST = re.compile(r"^[a-z0-9]+\.lambda-url\.([a-z0-9-]+)\.on\.aws$")


class EndpointError(RuntimeError):
    """The relay's URL cannot be found."""


def url_from_stack(stack_name: str, cloudformation: Any = None, region: str | None = None) -> str:
    """Return the stack's FunctionUrl output; `cloudformation` is a boto3 client, built when None."""
    try:
        cloudformation = cloudformation or boto3.client("cloudformation", region_name=region)
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except (ClientError, BotoCoreError) as exc:
        hint = " (pass --region or set AWS_REGION)" if "region" in str(exc).lower() else ""
        raise EndpointError(f"cannot read stack {stack_name!r}: {exc}{hint}") from exc
    for output in stacks[0].get("Outputs", []):
        if output["OutputKey"] == URL_OUTPUT:
            return output["OutputValue"]
    raise EndpointError(f"stack {stack_name!r} has no {URL_OUTPUT} output; deploy it from template.yaml")


def function_url_region(url: str) -> str | None:
    """Return the region of a Lambda Function URL, or None for any other URL (such as a local one)."""
    match = _FUNCTION_URL_HOST.match(urlsplit(url).hostname or "")
    return match.group(1) if match else None


def chat_url(url: str) -> str:
    """Return the /chat URL for a base URL, leaving a URL that already names a path alone."""
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        return url.rstrip("/") + "/chat"
    return url
