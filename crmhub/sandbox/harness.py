"""`crmhub serve` as a real child process, for tests and benchmarks against the sandbox."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import httpx

__all__ = ["ServeProcess", "free_port"]


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """Starts `crmhub --config CONFIG serve --port P` and waits until `/readyz` answers 200."""

    def __init__(self, config: Path, env: Mapping[str, str], *args: str, port: int | None = None) -> None:
        self.config = config
        self.env = {**os.environ, **env}
        self.args = args
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = tempfile.NamedTemporaryFile(prefix="crmhub-serve-", suffix=".log", delete=False)  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None
        self._final: str | None = None

    def start(self, timeout: float = 30.0) -> ServeProcess:
        """Launch, then poll readiness; a process that exits first raises with its log."""
        command = [
            sys.executable,
            "-m",
            "crmhub",
            "--config",
            str(self.config),
            "serve",
            "--port",
            str(self.port),
        ]
        self.process = subprocess.Popen(
            [*command, *self.args], env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"crmhub serve exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"crmhub serve was not ready within {timeout} s:\n{self.log()}")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (a graceful shutdown), then SIGKILL after `timeout`; the exit code.

        The log is kept in memory (`log()` still answers) and its file removed.
        """
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._final is None:
            self._final = self.log()
            self._log.close()
            Path(self._log.name).unlink(missing_ok=True)
        return self.process.returncode

    def log(self) -> str:
        """Everything the process printed so far."""
        if self._final is not None:
            return self._final
        return Path(self._log.name).read_text(encoding="utf-8", errors="replace")

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
