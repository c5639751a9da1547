#!/bin/sh
# Starts the relay: LWA runs this as the Lambda handler, and ./scripts/dev runs it locally.
here="$(cd "$(dirname "$0")" && pwd)"
export PYTHONPATH="$here:/opt/python${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m gunicorn --config "$here/gunicorn.conf.py" "bedrock_relay.app:create_app()"
