"""Real worker processes for the guarantee tests: start, kill -9, SIGTERM, restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from tests.clock import ISSUED
from tests.conftest import WHM_TOKEN, loopback_table
from workers.sandbox import SandboxServer

ROOT = Path(__file__).resolve().parents[2]


def worker_env(tmp_path: Path, redis_url: str, whm: SandboxServer, *, token: str = WHM_TOKEN,
               backend: dict[str, Any] | None = None, **mailops: Any) -> dict[str, str]:
    """Environment for worker processes with one WHM backend ``whm1`` on ``whm`` (3 s read timeout,
    32 calls in flight unless ``backend`` says otherwise) and the given ``[mailops]`` settings
    (signatures off unless given)."""
    mailops.setdefault("require_signatures", False)
    table = {"kind": "whm", "url": whm.url, "token_env": "TOKEN_WHM1", "read_timeout": 3.0, "max_concurrency": 32,
             **(backend or {})}
    config = write_worker_config(tmp_path / "workers.toml", {"whm1": table}, **mailops)
    return {"MAILOPS_REDIS_URL": redis_url, "MAILOPS_CONFIG": str(config), "TOKEN_WHM1": token}


def write_worker_config(path: Path, backends: dict[str, dict[str, Any]], **mailops: Any) -> Path:
    """A backends file with a ``[mailops]`` table of settings (TOML shape of Settings.from_env)."""
    lines = ["[mailops]"] + [f"{k} = {orjson.dumps(v).decode()}" for k, v in mailops.items()]
    for name, table in backends.items():
        lines.append(f"[backends.{name}]")
        lines += [f"{k} = {orjson.dumps(v).decode()}" for k, v in loopback_table(table).items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class WorkerProcess:
    """One ``python -m workers worker -p 1`` subprocess (or another module's entry point)."""

    def __init__(self, env: dict[str, str], log: Path, *, module: str = "workers", threads: int = 8,
                 extra: tuple[str, ...] = ()) -> None:
        self.env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.log = log
        self.args = [sys.executable, "-m", module, "worker", "-p", "1", "-t", str(threads), *extra]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> float:
        """SIGKILL now; returns the wall time of the kill."""
        assert self.proc is not None
        at = time.time()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        return at

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(timeout=30)


def wait_all_terminal(client: Any, ids: set[str], *, timeout: float, poll_s: float = 0.5) -> list[Any]:
    """Poll (gently: large streams) until every id has a terminal event; return all events."""
    from tests.conftest import read_events

    deadline = time.monotonic() + timeout
    while True:
        events = read_events(client)
        done = {e.id for e in events if e.terminal}
        if ids <= done:
            return events
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(ids - done)} of {len(ids)} commands have no terminal event after {timeout}s")
        time.sleep(poll_s)


def suspend(id: str, user: str, *, backend: str = "whm1", priority: str | None = None,
            command: str = "suspend_outgoing") -> dict[str, Any]:
    body: dict[str, Any] = {"id": id, "command": command, "backend": backend, "args": {"user": user},
                            "producer": "migration", "issued_at": ISSUED}
    if priority:
        body["priority"] = priority
    return body


def add_many(client: Any, bodies: list[dict[str, Any]], stream: str = "mailops:commands") -> None:
    pipe = client.pipeline(transaction=False)
    for i, body in enumerate(bodies, 1):
        pipe.xadd(stream, {"body": orjson.dumps(body)})
        if i % 500 == 0:
            pipe.execute()
    pipe.execute()


def wait_until_busy(client: Any, pid: int, timeout: float = 60.0) -> None:
    """Wait until the worker process ``pid`` holds fetched commands (a non-empty ack set)."""
    deadline = time.monotonic() + timeout
    while not any(client.scard(key) for key in client.scan_iter(match=f"mailops:dq:__acks__.*-{pid}-*")):
        assert time.monotonic() < deadline, f"worker {pid} never fetched a command"
        time.sleep(0.02)


def kill_in_turns(client: Any, procs: list[WorkerProcess], spawn: Callable[[str], WorkerProcess],
                  kills: int) -> dict[int, float]:
    """Every 1.5 s, SIGKILL the two workers in turn and start a new one in its place, ``kills``
    times; returns pid -> wall time of its kill. On a busy machine a new worker may still be
    starting after 1.5 s: each kill waits until its worker holds fetched commands, so it lands on
    running work."""
    killed: dict[int, float] = {}
    for round_ in range(kills):
        time.sleep(1.5)
        slot = round_ % len(procs)
        wait_until_busy(client, procs[slot].pid)
        killed[procs[slot].pid] = procs[slot].kill9()
        procs[slot] = spawn(f"w{slot}-{round_}")
    return killed


def run_killing_in_turns(client: Any, env: dict[str, str], logs: Path, bodies: list[dict[str, Any]], *,
                         kills: int, module: str = "workers", timeout: float = 240) -> tuple[list[Any], dict[int, float]]:
    """Two worker processes (``module``'s entry point) run ``bodies`` while one is SIGKILLed every
    1.5 s, ``kills`` times (:func:`kill_in_turns`); returns every event once each body's command
    has its terminal one, and pid -> wall time of each kill. The workers are stopped either way."""
    spawn = lambda name: WorkerProcess(env, logs / f"{name}.log", module=module).start()  # noqa: E731
    procs = [spawn(f"w{i}") for i in range(2)]
    try:
        add_many(client, bodies)
        killed = kill_in_turns(client, procs, spawn, kills)
        return wait_all_terminal(client, {str(body["id"]) for body in bodies}, timeout=timeout), killed
    finally:
        for proc in procs:
            proc.stop()
