"""gunicorn settings for the relay; GUNICORN_CMD_ARGS can still override any of them."""

import os

# LWA looks for the app on AWS_LWA_PORT first, then PORT.
bind = f"0.0.0.0:{os.environ.get('AWS_LWA_PORT') or os.environ.get('PORT') or '8080'}"
# gthread keeps the worker's heartbeat apart from requests, so a 15-minute stream
# is not killed at `timeout` the way the default sync worker kills it.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
# Each stream holds one thread for its whole life.
threads = int(os.environ.get("WEB_THREADS", "64"))
# Outlive the idle keep-alive of LWA's connection pool, so no request lands on a closing socket.
keepalive = 75
# No control socket: it starts an asyncio thread in the arbiter on the cold path, and
# Lambda's read-only home directory has nowhere to put it.
control_socket_disable = True
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "warning").lower()
