"""What the bench measures with: percentiles, peak RSS from /proc, Redis memory, and an
event-stream watcher that timestamps every terminal event as it arrives."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from workers.store.wire import as_text


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` (0..100) percentile by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"count": len(ms), "p50_ms": round(percentile(ms, 50), 2), "p95_ms": round(percentile(ms, 95), 2),
            "p99_ms": round(percentile(ms, 99), 2), "max_ms": round(max(ms), 2) if ms else math.nan}


def vm_hwm_bytes(pid: int) -> int:
    """Peak resident set size (``VmHWM``) of a live process, in bytes; 0 when unreadable."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def used_memory(client: redis.Redis) -> int:
    info: Any = client.info("memory")
    return int(info["used_memory"])


def entry_ms(entry_id: bytes | str) -> int:
    return int(as_text(entry_id).split("-", 1)[0])


@dataclass
class Terminal:
    status: str
    #: Redis time of the event's stream entry (ms).
    entry_ms: int
    #: ``time.perf_counter()`` in the bench process when the watcher read it.
    seen: float


@dataclass
class EventWatcher:
    """Follows one events stream from its start in a thread; counts ``accepted`` and terminal events."""

    client: redis.Redis
    stream: str
    terminal: dict[str, Terminal] = field(default_factory=dict)
    accepted: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _thread: threading.Thread | None = None

    def start(self) -> EventWatcher:
        self._thread = threading.Thread(target=self._run, name="bench-events", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        last = "0-0"
        while not self._stop.is_set():
            try:
                reply: Any = self.client.xread({self.stream: last}, block=100, count=1000)
            except (redis.RedisError, ValueError):
                # Redis went away (the bench is ending or failed): nothing more to watch.
                return
            now = time.perf_counter()
            for _stream, items in reply or []:
                with self._changed:
                    for eid, fields in items:
                        last = eid.decode()
                        body = orjson.loads(fields[b"body"])
                        if body.get("terminal"):
                            key = body.get("id") or last
                            self.terminal.setdefault(key, Terminal(body.get("status", "?"), entry_ms(eid), now))
                        elif body.get("status") == "accepted":
                            self.accepted += 1
                    self._changed.notify_all()

    def wait_terminal(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` terminal events were seen; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.terminal) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.2))
        return True

    def wait_accepted(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.accepted < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.2))
        return True

    def rate(self, ids: Collection[str] | None = None) -> float:
        """Completions per second between the first and the last terminal event (Redis clock)."""
        marks = sorted(t.entry_ms for k, t in self.terminal.items() if ids is None or k in ids)
        if len(marks) < 2 or marks[-1] == marks[0]:
            return math.nan
        return (len(marks) - 1) / ((marks[-1] - marks[0]) / 1000)

    def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.terminal.values():
            counts[t.status] = counts.get(t.status, 0) + 1
        return counts

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def redis_cpu_s(client: Any) -> float:
    """CPU seconds the Redis server has used so far (user + system)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def redis_calls(client: Any) -> tuple[int, int]:
    """Commands and script calls (``EVAL``/``EVALSHA``) the Redis server has run so far."""
    stats = client.info("commandstats")
    commands = sum(int(s.get("calls", 0)) for s in stats.values())
    scripts = sum(int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_evalsha", "cmdstat_eval"))
    return commands, scripts
