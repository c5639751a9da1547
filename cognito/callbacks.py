"""A CloudFormation custom resource: the Cognito app client's sign-in settings, with the Function URL."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import boto3
from botocore.config import Config

# What UpdateUserPoolClient takes besides the URLs: it resets every field a call leaves out,
# so each one DescribeUserPoolClient returns is passed back as it was.
UPDATABLE = (
    "ClientName",
    "RefreshTokenValidity",
    "AccessTokenValidity",
    "IdTokenValidity",
    "TokenValidityUnits",
    "ReadAttributes",
    "WriteAttributes",
    "ExplicitAuthFlows",
    "SupportedIdentityProviders",
    "AllowedOAuthFlows",
    "AllowedOAuthScopes",
    "AllowedOAuthFlowsUserPoolClient",
    "AnalyticsConfiguration",
    "PreventUserExistenceErrors",
    "EnableTokenRevocation",
    "EnablePropagateAdditionalUserContextData",
    "AuthSessionValidity",
    "RefreshTokenRotation",
)


# CloudFormation hands a custom resource every value as a string; the API wants these typed.
BOOLEANS = {
    "AllowedOAuthFlowsUserPoolClient",
    "EnableTokenRevocation",
    "EnablePropagateAdditionalUserContextData",
}
INTEGERS = {"RefreshTokenValidity", "AccessTokenValidity", "IdTokenValidity", "AuthSessionValidity"}
# Short enough that an answer always reaches CloudFormation before the function's 60 s run out.
CLIENT_CONFIG = Config(connect_timeout=5, read_timeout=10, retries={"total_max_attempts": 2})


def typed(settings: dict) -> dict:
    """Return the settings with the booleans and numbers CloudFormation turned into strings restored."""
    out = {}
    for name, value in settings.items():
        if name in BOOLEANS:
            out[name] = str(value).lower() == "true"
        elif name in INTEGERS:
            out[name] = int(value)
        else:
            out[name] = value
    return out


def configure_client(client: Any, pool_id: str, client_id: str, url: str, settings: dict) -> None:
    """Apply the sign-in settings, with `url` the only callback and sign-out URL, keeping the rest."""
    current = client.describe_user_pool_client(UserPoolId=pool_id, ClientId=client_id)["UserPoolClient"]
    kept = {name: current[name] for name in UPDATABLE if name in current}
    client.update_user_pool_client(
        UserPoolId=pool_id,
        ClientId=client_id,
        **{**kept, **typed(settings)},
        CallbackURLs=[url],
        LogoutURLs=[url],
    )


def respond(event: dict, status: str, reason: str = "") -> None:
    """Tell CloudFormation how the resource went: a PUT of JSON to the presigned ResponseURL."""
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:500] or status,
            "PhysicalResourceId": event.get("PhysicalResourceId")
            or f"{event['LogicalResourceId']}-callbacks",
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": {},
        }
    ).encode()
    request = urllib.request.Request(
        event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": ""}
    )
    with urllib.request.urlopen(request, timeout=30):
        pass


def handler(event: dict, _context: Any = None, client: Any = None) -> None:
    """Configure the client on Create and Update; on Delete there is nothing to undo."""
    try:
        if event["RequestType"] in ("Create", "Update"):
            props = event["ResourceProperties"]
            configure_client(
                client or boto3.client("cognito-idp", config=CLIENT_CONFIG),
                props["UserPoolId"],
                props["ClientId"],
                props["Url"],
                props.get("Settings", {}),
            )
        respond(event, "SUCCESS")
    except Exception as exc:
        # Any answer beats none: without one, CloudFormation waits an hour for the resource.
        respond(event, "FAILED", f"{type(exc).__name__}: {exc}")
