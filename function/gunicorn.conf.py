"""gunicorn settings for the relay, from the service's own settings; GUNICORN_CMD_ARGS can still override."""

import sys

from bedrock_relay.settings import SettingsError, from_env

try:
    _settings = from_env()
except SettingsError as exc:
    # Checked here, in the arbiter, so a bad value stops the start with one line that names it.
    sys.exit(f"error: {exc}")
# Loopback, where LWA looks, unless LISTEN_HOST says otherwise; AWS_LWA_PORT, else PORT.
bind = _settings.bind
# gthread keeps the worker's heartbeat apart from requests, so a 15-minute stream
# is not killed at `timeout` the way the default sync worker kills it.
# Its subclass reads each request in the event loop before a thread takes it (a slow client holds
# no thread), answers /healthz there, and answers the server's own refusals in JSON.
worker_class = "bedrock_relay.server.RelayWorker"
workers = _settings.web_concurrency
threads = _settings.web_threads
# SnapStart resumes a snapshot of the started server, perhaps days later. The arbiter judges a
# worker hung by the time since its last heartbeat, so the pause could get the worker killed on
# the first request after a restore. Lambda's own timeout bounds a hung worker there.
timeout = 0 if _settings.lambda_initialization_type == "snap-start" else 30
# Outlive the idle keep-alive of LWA's connection pool, so no request lands on a closing socket.
keepalive = 75
# No control socket: it starts an asyncio thread in the arbiter on the cold path, and
# Lambda's read-only home directory has nowhere to put it.
control_socket_disable = True
# Room for a header over the app's 8 KB token limit, so an oversized token gets the app's JSON
# 401 naming the reason rather than the server's HTML 431 (gunicorn's default is 8190 bytes).
limit_request_field_size = 20000
accesslog = None
errorlog = "-"
loglevel = _settings.log_level
