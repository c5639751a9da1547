"""Streams one answer from the relay's Function URL: python stream_chat.py URL PROMPT.

Signs with IAM (SigV4), or sends RELAY_TOKEN (a JWT) or RELAY_API_KEY when the relay checks those.
"""

import json
import os
import sys

import botocore.session
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

url, prompt = sys.argv[1].rstrip("/") + "/chat", sys.argv[2]
# https://<id>.lambda-url.<region>.on.aws/ names its region; a local URL does not.
region = url.split(".")[2] if ".lambda-url." in url else os.environ.get("AWS_REGION", "us-east-1")

body = json.dumps({"prompt": prompt})
headers = {"Content-Type": "application/json"}
token, key = os.environ.get("RELAY_TOKEN", "").strip(), os.environ.get("RELAY_API_KEY", "").strip()
if token:
    headers["Authorization"] = f"Bearer {token}"
elif key:
    headers["X-Api-Key"] = key
else:
    # The standard chain: environment, ~/.aws profiles, SSO, instance roles.
    credentials = botocore.session.Session().get_credentials()
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(credentials, "lambda", region).add_auth(request)
    headers = dict(request.headers)

# stream=True hands over each chunk as it arrives; no read timeout, as a stream may last 15 minutes.
with requests.post(url, data=body, headers=headers, stream=True, timeout=(10, None)) as response:
    if response.status_code >= 400:
        # The relay's JSON error names the problem; raise_for_status() would hide it.
        sys.exit(f"HTTP {response.status_code}: {response.text}")
    for text in response.iter_content(chunk_size=None, decode_unicode=True):
        print(text, end="", flush=True)
print()
