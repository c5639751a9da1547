"""AWS credentials for signing: from the environment, else from `aws configure export-credentials`."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping

from botocore.credentials import Credentials


class CredentialsError(RuntimeError):
    """No usable AWS credentials were found."""


def load_credentials(environ: Mapping[str, str] | None = None, aws_cli: str = "aws") -> Credentials:
    """Return credentials from AWS_ACCESS_KEY_ID..., or ask the AWS CLI (which knows profiles and SSO)."""
    environ = os.environ if environ is None else environ
    if environ.get("AWS_ACCESS_KEY_ID") and environ.get("AWS_SECRET_ACCESS_KEY"):
        return Credentials(
            environ["AWS_ACCESS_KEY_ID"], environ["AWS_SECRET_ACCESS_KEY"], environ.get("AWS_SESSION_TOKEN")
        )
    try:
        done = subprocess.run(
            [aws_cli, "configure", "export-credentials", "--format", "process"],
            capture_output=True,
            text=True,
            env=dict(environ),
            timeout=60,
        )
    except FileNotFoundError:
        raise CredentialsError(
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or install the AWS CLI v2"
        ) from None
    except subprocess.TimeoutExpired:
        raise CredentialsError("`aws configure export-credentials` did not answer within 60 s") from None
    if done.returncode != 0:
        raise CredentialsError(f"`aws configure export-credentials` failed: {done.stderr.strip()}")
    try:
        exported = json.loads(done.stdout)
        return Credentials(exported["AccessKeyId"], exported["SecretAccessKey"], exported.get("SessionToken"))
    except (ValueError, KeyError, TypeError):
        raise CredentialsError("`aws configure export-credentials` printed no credentials") from None
