"""Runs the Bedrock stand-in: `python -m standin --port 8787`."""

from __future__ import annotations

import argparse
import contextlib
import os

from .scenarios import Scenario
from .server import StandInServer, validate_defaults


def main() -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("STANDIN_PORT", "8787")))
    parser.add_argument(
        "--ttft",
        type=float,
        default=float(os.environ.get("STANDIN_TTFT", "0.4")),
        help="seconds before the first token (default 0.4)",
    )
    parser.add_argument(
        "--tps",
        type=float,
        default=float(os.environ.get("STANDIN_TPS", "30")),
        help="tokens per second, 0 for full speed (default 30)",
    )
    parser.add_argument(
        "--tokens",
        type=int,
        default=int(os.environ.get("STANDIN_TOKENS", "60")),
        help="answer length in tokens (default 60)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args()
    defaults = validate_defaults(Scenario(tokens=args.tokens, tps=args.tps, ttft=args.ttft))
    server = StandInServer((args.host, args.port), defaults, verbose=args.verbose)
    print(f"Bedrock stand-in listening on {server.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
