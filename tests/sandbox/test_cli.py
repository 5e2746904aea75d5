"""`crmhub sandbox config | tick | serve` through the CLI runner."""

from __future__ import annotations

import base64
import json
import socket
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from connectors.config import ConnectorsConfig
from crmhub.cli.sandbox import sandbox_app
from crmhub.sandbox import Sandbox, credentials, sandbox_config

runner = CliRunner()


def test_config_prints_exports_then_a_valid_config(url: str) -> None:
    result = runner.invoke(sandbox_app, ["config", "--url", url, "--database-url", "sqlite:///demo.db"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"# export STRIPE_API_KEY={credentials.STRIPE_API_KEY}"
    assert f"# export SEGMENT_WRITE_KEY={credentials.SEGMENT_WRITE_KEY}" in lines
    data = tomllib.loads(result.stdout)
    assert data["database"] == {"url": "sqlite:///demo.db"}
    connectors = ConnectorsConfig.model_validate(data["connectors"])
    assert connectors.enabled_sources() == ["stripe", "hubspot", "typeform", "segmentio"]
    assert connectors.stripe.base_url == connectors.hubspot.base_url == connectors.typeform.base_url == url
    assert connectors.typeform.forms == ["crmhubNPS"]
    assert set(connectors.secret_envs().values()) <= set(credentials.ENVIRONMENT)


def test_sandbox_config_is_a_plain_function() -> None:
    text = sandbox_config("http://127.0.0.1:9/")
    assert 'base_url = "http://127.0.0.1:9"' in text
    assert tomllib.loads(text)["database"]["url"] == "sqlite:///crmhub.db"


def test_tick_prints_the_changes(url: str) -> None:
    result = runner.invoke(sandbox_app, ["tick", "--url", url, "--days", "1"])
    assert result.exit_code == 0, result.output
    assert "hubspot.contacts.property_changes" in result.stdout


def test_unreachable_sandbox_is_exit_1_without_traceback() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = runner.invoke(sandbox_app, ["config", "--url", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert "no sandbox answers" in result.stderr and "Traceback" not in result.output


def test_bad_usage_is_exit_2() -> None:
    assert runner.invoke(sandbox_app, ["serve", "--fault", "stripe:teapot"]).exit_code == 2
    assert runner.invoke(sandbox_app, ["serve", "--webhook", "stripe"]).exit_code == 2
    assert runner.invoke(sandbox_app, ["serve", "--webhook", "paypal=http://x"]).exit_code == 2
    assert runner.invoke(sandbox_app, ["serve", "--webhook", "stripe=ftp://x"]).exit_code == 2
    assert runner.invoke(sandbox_app, ["tick", "--url", "ftp://x"]).exit_code == 2
    assert runner.invoke(sandbox_app, ["tick", "--url", "http://x", "--days", "0"]).exit_code == 2


def test_serve_on_a_taken_port_is_exit_1() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = runner.invoke(sandbox_app, ["serve", "--people", "5", "--port", str(port)])
    assert result.exit_code == 1
    assert "cannot listen" in result.stderr


class _TrackingApi(BaseHTTPRequestHandler):
    """Records each batch a client posts to /v1/batch; answers as crmhub's Tracking API, or with `status`."""

    batches: ClassVar[list[tuple[str, dict[str, Any]]]] = []
    status = 200

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).batches.append((self.headers["authorization"], body))
        answer = json.dumps({"success": self.status == 200}).encode()
        self.send_response(self.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def tracking_api() -> Iterator[tuple[str, type[_TrackingApi]]]:
    _TrackingApi.batches, _TrackingApi.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TrackingApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _TrackingApi
    server.shutdown()
    server.server_close()


def test_send_events_pushes_every_product_event_through_the_library(
    url: str, sandbox: Sandbox, tracking_api: tuple[str, type[_TrackingApi]]
) -> None:
    target, api = tracking_api
    result = runner.invoke(sandbox_app, ["send-events", "--url", url, "--to", target], env={})
    assert result.exit_code == 0, result.output
    sent = [m for _, body in api.batches for m in body["batch"]]
    expected = sandbox.world.product_events
    assert sorted(m["messageId"] for m in sent) == sorted(m["messageId"] for m in expected)
    key = base64.b64encode(f"{credentials.SEGMENT_WRITE_KEY}:".encode()).decode()
    assert {auth for auth, _ in api.batches} == {f"Basic {key}"}
    assert all(len(body["batch"]) <= 100 for _, body in api.batches)
    assert f"identify and {sum(m['type'] == 'track' for m in expected)} track calls" in result.stdout


def test_send_events_to_a_crmhub_that_refuses_says_so(
    url: str, tracking_api: tuple[str, type[_TrackingApi]]
) -> None:
    target, api = tracking_api
    api.status = 400  # not retried by the library
    result = runner.invoke(sandbox_app, ["send-events", "--url", url, "--to", target], env={})
    assert result.exit_code == 1
    assert f"{target} refused" in result.stderr and "connectors.segmentio enabled" in result.stderr
