"""`crmhub sandbox config | tick | serve` through the CLI runner."""

from __future__ import annotations

import socket
import tomllib

from typer.testing import CliRunner

from connectors.config import ConnectorsConfig
from crmhub.cli.sandbox import sandbox_app
from crmhub.sandbox import credentials, sandbox_config

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
