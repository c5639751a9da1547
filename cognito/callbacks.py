"""A CloudFormation custom resource: Cognito sign-in returns to the Function URL, made after the client."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import boto3

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


def point_client_at(client: Any, pool_id: str, client_id: str, url: str) -> None:
    """Make `url` the app client's only callback and sign-out URL, keeping its other settings."""
    current = client.describe_user_pool_client(UserPoolId=pool_id, ClientId=client_id)["UserPoolClient"]
    kept = {name: current[name] for name in UPDATABLE if name in current}
    client.update_user_pool_client(
        UserPoolId=pool_id, ClientId=client_id, **kept, CallbackURLs=[url], LogoutURLs=[url]
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
    """Point the client at the URL on Create and Update; on Delete there is nothing to undo."""
    try:
        if event["RequestType"] in ("Create", "Update"):
            props = event["ResourceProperties"]
            point_client_at(
                client or boto3.client("cognito-idp"), props["UserPoolId"], props["ClientId"], props["Url"]
            )
        respond(event, "SUCCESS")
    except Exception as exc:
        # Any answer beats none: without one, CloudFormation waits an hour for the resource.
        respond(event, "FAILED", f"{type(exc).__name__}: {exc}")
