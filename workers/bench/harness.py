"""The bench's processes: the sandbox process, mailops worker processes and baseline workers.

Every worker is a real subprocess started the way an operator would start it
(``mailops worker -p 1 -t T`` with ``MAILOPS_REDIS_URL`` and ``MAILOPS_CONFIG``), so
the figures include process start-up costs nowhere and GIL sharing with the measurer nowhere.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from workers.bench.measure import vm_hwm_bytes

#: Token the bench sandboxes accept (loopback only).
BENCH_TOKEN = "bench-whm-token"
#: The producer the bench signs its commands as, and its HMAC key (a bench-only secret).
BENCH_PRODUCER = "bench"
BENCH_PRODUCER_KEY = "bench-producer-key"
#: ``mailops worker`` as a subprocess: the same click command, loaded without the rest of the CLI
#: group so that one broken subcommand module cannot stop the bench.
WORKER_COMMAND = (sys.executable, "-c", "from workers.cli.worker import worker; worker(prog_name='mailops worker')")
#: Seconds a subprocess may take to say it is ready.
READY_TIMEOUT_S = 30.0


class BenchProcessError(RuntimeError):
    """A bench subprocess did not start or answer (not part of the mailops error tree: bench only)."""


class Child:
    """One subprocess whose stderr is drained in a thread (the last lines kept for errors)."""

    def __init__(self, args: Sequence[str], *, env: Mapping[str, str] | None = None, ready: str = "") -> None:
        self.args = list(args)
        self.proc = subprocess.Popen(
            self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=dict(env) if env is not None else None,
        )
        self.tail: collections.deque[str] = collections.deque(maxlen=20)
        self._ready = threading.Event()
        self._marker = ready
        threading.Thread(target=self._drain, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.tail.append(line)
            if self._marker and self._marker in line:
                self._ready.set()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchProcessError(f"{' '.join(self.args[:4])} did not start: {list(self.tail)[-5:]}")

    def peak_rss(self) -> int:
        return vm_hwm_bytes(self.pid)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        return self.proc.returncode


class SandboxProcess:
    """The WHM sandboxes (one per backend) in their own process."""

    def __init__(self, backends: int, users: int) -> None:
        self.child = Child([sys.executable, "-m", "workers.bench.sandbox_proc", "--backends", str(backends),
                            "--token", BENCH_TOKEN, "--users", str(users)])
        assert self.child.proc.stdout is not None
        line = self.child.proc.stdout.readline()
        if not line:
            raise BenchProcessError(f"sandbox process did not start: {list(self.child.tail)}")
        self.urls: list[str] = json.loads(line)["urls"]

    def _control(self, index: int, path: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        data = orjson.dumps(payload) if payload is not None else None
        request = urllib.request.Request(f"{self.urls[index]}/__sandbox__/{path}", data=data,
                                         method="POST" if data is not None else "GET")
        with urllib.request.urlopen(request, timeout=10) as response:
            result: dict[str, Any] = orjson.loads(response.read())
            return result

    def set_latency(self, latency_s: float) -> None:
        for index in range(len(self.urls)):
            self._control(index, "faults", {"latency_s": latency_s})
            self._control(index, "reset-stats", {})

    def set_latency_of(self, index: int, latency_s: float) -> None:
        """One backend's answer time (the others keep theirs), its stats reset."""
        self._control(index, "faults", {"latency_s": latency_s})
        self._control(index, "reset-stats", {})

    def stats(self, index: int) -> dict[str, Any]:
        return self._control(index, "stats")

    def stop(self) -> None:
        self.child.stop()


@dataclass
class Phase:
    """Names of one phase's keys and streams, so phases never see each other's data."""

    prefix: str

    @property
    def commands_stream(self) -> str:
        return f"{self.prefix}:commands"

    @property
    def events_stream(self) -> str:
        return f"{self.prefix}:events"


@dataclass
class WorkerPool:
    """The worker subprocesses of one phase; peak RSS is read from each before it stops."""

    children: list[Child] = field(default_factory=list)
    peak_rss: list[int] = field(default_factory=list)

    def stop(self) -> None:
        self.peak_rss = [child.peak_rss() for child in self.children]
        for child in self.children:
            child.stop()


def write_config(path: Path, backends: Mapping[str, tuple[str, int]], *, verify: bool = True,
                 extra: Mapping[str, Mapping[str, float]] | None = None) -> Path:
    """The backends and producers file (TOML), like ``tests/conftest.py`` writes it; name -> (url,
    max_concurrency); ``verify``: read each change back (the default); ``extra``: name -> more
    numeric keys of that backend (they replace the defaults: ``read_timeout`` 10 s)."""
    lines = []
    for name, (url, cap) in backends.items():
        keys = {"read_timeout": 10.0, **(extra or {}).get(name, {})}
        lines += [f"[backends.{name}]", 'kind = "whm"', f'url = "{url}"', "allow_insecure_http = true", 'token_env = "MAILOPS_BENCH_TOKEN"',
                  *(f"{key} = {value}" for key, value in keys.items()),
                  f"max_concurrency = {cap}", f"verify = {str(verify).lower()}", ""]
    lines += [f"[producers.{BENCH_PRODUCER}]", 'key_env = "MAILOPS_BENCH_PRODUCER_KEY"', 'commands = ["*"]',
              'backends = ["*"]', ""]
    path.write_text("\n".join(lines))
    return path


def start_mailops(
    redis_url: str, config: Path, phase: Phase, *, processes: int, threads: int, queues: str = "urgent,default,bulk",
) -> WorkerPool:
    """``processes`` separate ``mailops worker -p 1`` subprocesses (so each PID is a worker)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILOPS_")}
    env.update({
        "MAILOPS_REDIS_URL": redis_url, "MAILOPS_CONFIG": str(config), "MAILOPS_BENCH_TOKEN": BENCH_TOKEN,
        "MAILOPS_BENCH_PRODUCER_KEY": BENCH_PRODUCER_KEY,
        "MAILOPS_KEY_PREFIX": phase.prefix, "MAILOPS_COMMANDS_STREAM": phase.commands_stream,
        "MAILOPS_EVENTS_STREAM": phase.events_stream,
    })
    pool = WorkerPool([
        Child([*WORKER_COMMAND, "-p", "1", "-t", str(threads), "-q", queues,
               "--drain-timeout", "2"], env=env, ready="threads on")
        for _ in range(processes)
    ])
    return _ready(pool)


def _ready(pool: WorkerPool) -> WorkerPool:
    try:
        for child in pool.children:
            child.wait_ready()
    except BenchProcessError:
        pool.stop()
        raise
    return pool


def start_baseline(redis_url: str, namespace: str, phase: Phase, sandbox_url: str, *, processes: int,
                   threads: int, client: str = "httpx") -> WorkerPool:
    pool = WorkerPool([
        Child([sys.executable, "-m", "workers.bench.baseline", "--redis-url", redis_url, "--namespace", namespace,
               "--events", phase.events_stream, "--sandbox", sandbox_url, "--token", BENCH_TOKEN,
               "--threads", str(threads), "--client", client], ready="baseline worker:")
        for _ in range(processes)
    ])
    return _ready(pool)


def ceiling_rate(sandbox_urls: Sequence[str], *, per_backend: int, seconds: float) -> float:
    """Calls per second a direct client gets from the sandboxes, ``per_backend`` at a time each
    (``python -m workers.bench.ceiling`` in its own process)."""
    args = [sys.executable, "-m", "workers.bench.ceiling", "--per-backend", str(per_backend), "--token", BENCH_TOKEN,
            "--seconds", str(seconds)]
    for url in sandbox_urls:
        args += ["--sandbox", url]
    done = subprocess.run(args, capture_output=True, timeout=seconds + READY_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise BenchProcessError(f"ceiling run failed: {done.stderr.decode(errors='replace')[-2000:]}")
    return float(orjson.loads(done.stdout)["cps"])
