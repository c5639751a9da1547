"""A local DynamoDB (moto's server) with the streams table made from template.yaml's own definition."""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import boto3
import yaml
from moto.server import ThreadedMotoServer

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
RESOURCE = "StreamsTable"


class _TemplateLoader(yaml.SafeLoader):
    """Reads CloudFormation YAML: its short-form functions (!If, !Ref, ...) are kept as plain values."""


def _any_tag(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


_TemplateLoader.add_multi_constructor("!", _any_tag)


def table_definition(template: Path = TEMPLATE) -> dict:
    """Return the table's keys, attributes, indexes and TTL attribute, as the template declares them."""
    properties = yaml.load(template.read_text(), _TemplateLoader)["Resources"][RESOURCE]["Properties"]
    return {
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "GlobalSecondaryIndexes": properties["GlobalSecondaryIndexes"],
        "BillingMode": properties["BillingMode"],
        "ttl": properties["TimeToLiveSpecification"]["AttributeName"],
    }


def create_table(endpoint: str, name: str, region: str = "us-east-1") -> None:
    """Create the table at a local endpoint, as the template defines it, with TTL on."""
    definition = table_definition()
    ttl = definition.pop("ttl")
    credentials = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name=region, **credentials)
    client.create_table(TableName=name, **definition)
    ttl_spec = {"AttributeName": ttl, "Enabled": True}
    client.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl_spec)


class _OneAtATime(ThreadedMotoServer):
    """moto's server, answering one request at a time.

    DynamoDB applies each write to an item atomically, conditions included, and the relay's
    per-caller limits rely on that. moto's backend takes no lock, so two writes handled at once
    by its threads could both pass one condition, or lose an update.
    """

    def _server_entry(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app, lock = DomainDispatcherApplication(create_backend_app), threading.Lock()

        def serialized(environ, start_response):
            with lock:
                # The body is read and the answer made inside: moto's work is all in this call.
                return list(app(environ, start_response))

        self._server = make_server(
            self._ip_address, self._port, serialized, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


class LocalDynamoDB:
    """moto's DynamoDB server on a loopback port, with the streams table in it."""

    def __init__(self, port: int = 0, table: str = "relay-streams"):
        # One line per DynamoDB request would drown the relay's own log.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = _OneAtATime(ip_address="127.0.0.1", port=port, verbose=False)
        self.table = table
        self.url = ""

    def start(self) -> LocalDynamoDB:
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        create_table(self.url, self.table)
        return self

    def stop(self) -> None:
        self.server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8789)
    parser.add_argument("--table", default="relay-streams")
    args = parser.parse_args()
    local = LocalDynamoDB(args.port, args.table).start()
    print(f"Local DynamoDB on {local.url}, table {args.table}", file=sys.stderr, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    local.stop()


if __name__ == "__main__":
    main()
