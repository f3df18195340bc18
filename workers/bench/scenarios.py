"""The bench's runs. Each phase gets its own key prefix and streams, and its own worker
subprocesses; the sandbox process serves every phase.

Throughputs are measured from the first to the last terminal event of commands queued before
the workers start (Redis clock), so process start-up is never counted.
"""

from __future__ import annotations

import itertools
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from workers.bench import baseline
from workers.bench.commands import command_body, xadd_many
from workers.bench.harness import (
    Phase,
    SandboxProcess,
    WorkerPool,
    ceiling_rate,
    start_baseline,
    start_mailops,
    write_config,
)
from workers.bench.measure import (
    EventWatcher,
    entry_ms,
    latency_summary_ms,
    redis_calls,
    redis_cpu_s,
    used_memory,
)
from workers.bench.options import BenchOptions
from workers.bench.sandbox_proc import bench_users
from workers.constants import Keys

#: Accounts each bench sandbox holds; commands cycle through them. Enough that no two commands in
#: flight touch the same account: commands for one target+aspect are serialised by design (the
#: ordering guarantee), so a bench over a handful of accounts would measure that queue instead.
USERS = 25_000
#: Seconds to wait for a phase's terminal events before giving up on it.
PHASE_TIMEOUT_S = 120.0


class Bench:
    """One bench run: a Redis, the sandbox process, and the phases, each returning its figures."""

    def __init__(self, options: BenchOptions, redis_url: str, sandbox: SandboxProcess, workdir: Path) -> None:
        self.options = options
        self.redis_url = redis_url
        self.client = redis.Redis.from_url(redis_url)
        self.sandbox = sandbox
        self.workdir = workdir
        self.run_id = f"bench{int(time.time())}"
        self._phases = itertools.count()
        self.prefixes: list[str] = []
        self.peak_rss: dict[str, list[int]] = {}
        #: Redis CPU seconds, and Redis commands and script calls, of the last queued run (see
        #: :meth:`_queued_run`; the bench's own event reads included).
        self.last_redis_cpu_s = 0.0
        self.last_redis_calls = (0, 0)
        #: The slow backend's share of its cap in the last fairness run (see :meth:`_batch_seconds`).
        self.last_slow_share = 0.0

    def phase(self, name: str) -> Phase:
        prefix = f"{self.run_id}-{next(self._phases)}-{name}"
        self.prefixes.append(prefix)
        return Phase(prefix)

    def config(self, name: str, caps: dict[str, int], *, verify: bool = False) -> Path:
        """A phase's backends file. Read-back is off except where a phase says otherwise: the other
        phases measure the pipeline like for like with the plain-Dramatiq floor and earlier runs,
        one panel call per command; :meth:`readback` measures what reading back adds."""
        backends = {backend: (self.sandbox.urls[i], cap) for i, (backend, cap) in enumerate(caps.items())}
        return write_config(self.workdir / f"{name}.toml", backends, verify=verify)

    def _finish(self, name: str, pool: WorkerPool, watcher: EventWatcher) -> None:
        watcher.stop()
        pool.stop()
        self.peak_rss[name] = pool.peak_rss

    def _queued_run(self, name: str, bodies: list[bytes], caps: dict[str, int], *, processes: int,
                    threads: int, verify: bool = False) -> tuple[float, dict[str, int]]:
        phase = self.phase(name)
        xadd_many(self.client, phase.commands_stream, bodies)
        cpu_before, calls_before = redis_cpu_s(self.client), redis_calls(self.client)
        pool = start_mailops(self.redis_url, self.config(name, caps, verify=verify), phase, processes=processes,
                             threads=threads)
        watcher = EventWatcher(self.client, phase.events_stream).start()
        try:
            if not watcher.wait_terminal(len(bodies), PHASE_TIMEOUT_S):
                raise TimeoutError(f"{name}: {len(watcher.terminal)} of {len(bodies)} terminal events in time")
            # Redis CPU of the whole run: ingest, workers and the bench's own event reader.
            self.last_redis_cpu_s = redis_cpu_s(self.client) - cpu_before
            calls_after = redis_calls(self.client)
            self.last_redis_calls = (calls_after[0] - calls_before[0], calls_after[1] - calls_before[1])
            return watcher.rate(), watcher.statuses()
        finally:
            self._finish(name, pool, watcher)

    def _bodies(self, count: int, tag: str, *, backends: int = 1, priority: str | None = "default",
                uuid_ids: bool = False) -> list[bytes]:
        """Signed commands ``<tag>-<n>`` (or, with ``uuid_ids``, 36-character UUIDs but the first)."""
        users = bench_users(USERS)
        ids = [f"{tag}-{i}" if i == 0 or not uuid_ids else str(uuid.uuid4()) for i in range(count)]
        return [command_body(ids[i], users[i % USERS], backend=f"whm{i % backends + 1}", priority=priority)
                for i in range(count)]

    def throughput(self) -> dict[str, Any]:
        """The floor and mailops, one after the other, ``rounds`` times; the figures are those of the
        round with the median ratio (the floor alone moves by a quarter between runs here).

        Each round also runs the floor on mailops' own HTTP client (``pool_floor_cps``), so the
        report can say how much of the ratio is the client and how much the rest."""
        o = self.options
        self.sandbox.set_latency(0.0)
        cap = {"whm1": max(o.threads, 8)}
        rounds: list[dict[str, float]] = []
        statuses: dict[str, int] = {}
        for _ in range(o.rounds):
            base_rate = self.baseline_rate(o.commands)
            pool_rate = self.baseline_rate(o.commands, client="pool")
            rate, seen = self._queued_run("throughput", self._bodies(o.commands, "tp"), cap,
                                          processes=o.processes, threads=o.threads)
            for status, count in seen.items():
                statuses[status] = statuses.get(status, 0) + count
            # Redis is single-threaded: its CPU per command bounds what one Redis carries for the fleet.
            rounds.append({"baseline_cps": round(base_rate, 1), "mailops_cps": round(rate, 1),
                           "ratio": round(rate / base_rate, 3), "pool_floor_cps": round(pool_rate, 1),
                           "ratio_vs_pool_floor": round(rate / pool_rate, 3),
                           "redis_cpu_us_per_command": round(self.last_redis_cpu_s / o.commands * 1e6, 1),
                           "redis_calls_per_command": round(self.last_redis_calls[0] / o.commands, 2),
                           "script_calls_per_command": round(self.last_redis_calls[1] / o.commands, 2)})
        median = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
        redis_us = median["redis_cpu_us_per_command"]
        return {"commands": o.commands, "processes": o.processes, "threads": o.threads, **median,
                "rounds": rounds, "statuses": statuses,
                "redis_bound_cps": round(1e6 / redis_us) if redis_us > 0 else None}

    def baseline_rate(self, count: int, *, client: str = "httpx") -> float:
        o = self.options
        phase = self.phase("baseline")
        namespace = Keys(phase.prefix).dramatiq_namespace
        broker = baseline.build_broker(self.client, namespace)
        broker.declare_queue(baseline.QUEUE_NAME)
        users = bench_users(USERS)
        baseline.enqueue(broker, [(f"base-{i}", users[i % USERS]) for i in range(count)])
        pool = start_baseline(self.redis_url, namespace, phase, self.sandbox.urls[0],
                              processes=o.processes, threads=o.threads, client=client)
        watcher = EventWatcher(self.client, phase.events_stream).start()
        try:
            if not watcher.wait_terminal(count, PHASE_TIMEOUT_S):
                raise TimeoutError(f"baseline: {len(watcher.terminal)} of {count} completions in time")
            return watcher.rate()
        finally:
            self._finish("baseline", pool, watcher)

    def max_rate_now(self) -> float:
        """mailops' queued rate measured again just before a paced run: this machine's speed moves
        by a quarter within minutes, and "50 % load" should mean half of what it does now."""
        o = self.options
        self.sandbox.set_latency(0.0)
        rate, _ = self._queued_run("max_rate", self._bodies(max(200, o.commands // 2), "max"),
                                   {"whm1": max(o.threads, 8)}, processes=o.processes, threads=o.threads)
        return rate

    def latency(self, max_rate: float, *, name: str = "latency", verify: bool = False,
                duration_s: float | None = None) -> dict[str, Any]:
        o = self.options
        self.sandbox.set_latency(0.0)
        rate = max(1.0, max_rate * o.load_fraction)
        phase = self.phase(name)
        pool = start_mailops(self.redis_url, self.config(name, {"whm1": max(o.threads, 8)}, verify=verify), phase,
                             processes=o.processes, threads=o.threads)
        watcher = EventWatcher(self.client, phase.events_stream).start()
        warmup = int(rate * o.latency_warmup_s)
        try:
            sent = self.paced(phase, "lat", warmup + int(rate * (duration_s or o.latency_duration_s)), rate)
            watcher.wait_terminal(len(sent), PHASE_TIMEOUT_S)
        finally:
            self._finish(name, pool, watcher)
        # In sending order: the warm-up's commands first.
        order = list(sent.items())
        return {"load_fraction": o.load_fraction, "max_rate_cps": round(max_rate, 1), "rate_cps": round(rate, 1),
                **self.latencies(dict(order[warmup:]), watcher),
                "warmup": {"seconds": o.latency_warmup_s, **self.latencies(dict(order[:warmup]), watcher)}}

    def paced(self, phase: Phase, tag: str, count: int, rate: float, *, priority: str | None = "default",
               ) -> dict[str, tuple[float, int]]:
        """XADD ``count`` commands at ``rate`` per second; id -> (perf_counter at XADD, entry ms)."""
        users = bench_users(USERS)
        sent: dict[str, tuple[float, int]] = {}
        start = time.perf_counter()
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            command_id = f"{tag}-{i}"
            body = command_body(command_id, users[i % USERS], priority=priority)
            before = time.perf_counter()
            entry: Any = self.client.xadd(phase.commands_stream, {"body": body})
            sent[command_id] = (before, entry_ms(entry))
        return sent

    @staticmethod
    def latencies(sent: dict[str, tuple[float, int]], watcher: EventWatcher) -> dict[str, Any]:
        seen = [watcher.terminal[k].seen - t for k, (t, _ms) in sent.items() if k in watcher.terminal]
        on_redis_clock = [(watcher.terminal[k].entry_ms - ms) / 1000 for k, (_t, ms) in sent.items()
                          if k in watcher.terminal]
        return {**latency_summary_ms(seen), "missing": len(sent) - len(seen),
                "redis_clock": latency_summary_ms(on_redis_clock)}

    def readback(self) -> dict[str, Any]:
        """What reading every change back costs: the same queued run, then the same paced run (at
        a fraction of the rate with read-back off), with read-back off and on, in one run."""
        o = self.options
        self.sandbox.set_latency(0.0)
        cap = {"whm1": max(o.threads, 8)}
        found: dict[str, dict[str, Any]] = {}
        paced_at = 0.0
        for verify in (False, True):
            name = f"readback_{'on' if verify else 'off'}"
            rate, statuses = self._queued_run(name, self._bodies(o.commands, f"rb{int(verify)}"), cap,
                                              processes=o.processes, threads=o.threads, verify=verify)
            paced_at = paced_at or rate
            latency = self.latency(paced_at, name=f"{name}_latency", verify=verify, duration_s=o.latency_duration_s / 2)
            found[name.removeprefix("readback_")] = {"throughput_cps": round(rate, 1), "statuses": statuses,
                                                     **{k: latency[k] for k in ("rate_cps", "count", "p50_ms", "p99_ms")}}
        off, on = found["off"], found["on"]
        return {"commands": o.commands, "processes": o.processes, "threads": o.threads, "off": off, "on": on,
                "throughput_ratio": round(on["throughput_cps"] / off["throughput_cps"], 3) if off["throughput_cps"] else None}

    def urgent_under_bulk(self) -> dict[str, Any]:
        o = self.options
        self.sandbox.set_latency(0.0)
        phase = self.phase("urgent")
        pool = start_mailops(self.redis_url, self.config("urgent", {"whm1": max(o.threads, 8)}), phase,
                             processes=o.processes, threads=o.threads)
        watcher = EventWatcher(self.client, phase.events_stream).start()
        try:
            started = time.monotonic()
            xadd_many(self.client, phase.commands_stream, self._bodies(o.bulk, "bulk", priority="bulk"))
            if not watcher.wait_accepted(o.bulk, PHASE_TIMEOUT_S):
                raise TimeoutError(f"urgent: {watcher.accepted} of {o.bulk} bulk commands accepted in time")
            ingest_s = time.monotonic() - started
            waiting_before = o.bulk - len(watcher.terminal)
            sent = self.paced(phase, "urgent", o.urgent, 10.0, priority="urgent")
            deadline = time.monotonic() + 30
            while not set(sent) <= set(watcher.terminal) and time.monotonic() < deadline:
                time.sleep(0.05)
            waiting_after = o.bulk - sum(1 for k in watcher.terminal if k.startswith("bulk-"))
        finally:
            self._finish("urgent", pool, watcher)
        return {"bulk": o.bulk, "bulk_ingest_s": round(ingest_s, 2), "bulk_waiting_at_start": waiting_before,
                "bulk_waiting_at_end": waiting_after, **self.latencies(sent, watcher)}

    def utilisation(self) -> dict[str, Any]:
        o = self.options
        self.sandbox.set_latency(o.backend_latency_s)
        caps = {"whm1": o.cap, "whm2": o.cap}
        processes = 2
        threads = max(o.threads, o.cap * 2)
        rate, statuses = self._queued_run("utilisation", self._bodies(o.utilisation_commands, "util", backends=2),
                                          caps, processes=processes, threads=threads)
        allowed = sum(caps.values()) / o.backend_latency_s
        seen = {name: int(self.sandbox.stats(i)["max_in_flight"]) for i, name in enumerate(caps)}
        # The same backends with the same caps, called directly: no queue, no Redis (the ceiling).
        ceiling = ceiling_rate(self.sandbox.urls[:len(caps)], per_backend=o.cap, seconds=o.ceiling_s)
        return {"backend_latency_s": o.backend_latency_s, "caps": caps, "processes": processes,
                "threads": threads, "allowed_cps": round(allowed, 1), "achieved_cps": round(rate, 1),
                "share": round(rate / allowed, 3), "ceiling_cps": ceiling, "share_of_ceiling": round(rate / ceiling, 3),
                "max_in_flight": seen,
                "backends_over_cap": sorted(n for n, m in seen.items() if m > caps[n]), "statuses": statuses}

    def fairness(self) -> dict[str, Any]:
        """A slow backend's migration must not slow another backend's work: the fast backend's
        batch alone, then queued just behind the slow backend's batch (one worker, 8 threads)."""
        o = self.options
        n, slow_s, caps = o.fairness_commands, 0.2, {"whm1": 2, "whm2": 8}
        self.sandbox.set_latency_of(0, slow_s)
        self.sandbox.set_latency_of(1, 0.005)
        fast = [command_body(f"fast-{i}", user, backend="whm2", priority="bulk")
                for i, user in enumerate(bench_users(n))]
        alone_s = self._batch_seconds("fairness_alone", fast, caps, [f"fast-{i}" for i in range(n)])
        self.sandbox.set_latency_of(0, slow_s)
        self.sandbox.set_latency_of(1, 0.005)
        slow = [command_body(f"slow-{i}", user, backend="whm1", priority="bulk")
                for i, user in enumerate(bench_users(2 * n)[n:])]
        behind_s = self._batch_seconds("fairness_behind", slow + fast, caps, [f"fast-{i}" for i in range(n)],
                                       slow_window=True)
        slow_stats = self.sandbox.stats(0)
        return {"commands_per_batch": n, "slow_backend": {"latency_s": slow_s, "cap": caps["whm1"]},
                "fast_backend": {"latency_s": 0.005, "cap": caps["whm2"]},
                "fast_alone_s": round(alone_s, 2), "fast_behind_slow_s": round(behind_s, 2),
                "slowdown": round(behind_s / alone_s, 2),
                "slow_share_of_cap": self.last_slow_share,
                "slow_max_in_flight": int(slow_stats["max_in_flight"]),
                "slow_cap_violations": int(slow_stats["max_in_flight"]) > caps["whm1"]}

    def _batch_seconds(self, name: str, bodies: list[bytes], caps: dict[str, int], ids: list[str], *,
                       slow_window: bool = False) -> float:
        """Seconds from the first terminal event of the run to the last of ``ids`` (Redis clock).
        With ``slow_window``, also the slow backend's share of its cap (``last_slow_share``)."""
        phase = self.phase(name)
        xadd_many(self.client, phase.commands_stream, bodies)
        pool = start_mailops(self.redis_url, self.config(name, caps), phase, processes=1, threads=8)
        watcher = EventWatcher(self.client, phase.events_stream).start()
        try:
            deadline = time.monotonic() + PHASE_TIMEOUT_S
            while not set(ids) <= set(watcher.terminal):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}: {len(set(ids) & set(watcher.terminal))} of {len(ids)} in time")
                time.sleep(0.02)
            first = min(t.entry_ms for t in list(watcher.terminal.values()))
            seconds = (max(watcher.terminal[i].entry_ms for i in ids) - first) / 1000
            if slow_window:
                # Keep the slow batch running a while longer, so its share is measured over a window
                # of several seconds even when the fast batch ends early: the slow backend's answers
                # in that window x its latency / (its cap x the window).
                time.sleep(max(0.0, 5.0 - seconds))
                slow = sorted(t.entry_ms for k, t in list(watcher.terminal.items()) if k.startswith("slow-"))
                window = (slow[-1] - slow[0]) / 1000 if len(slow) > 1 else 0.0
                self.last_slow_share = round((len(slow) - 1) * 0.2 / (2 * window), 3) if window > 0 else 0.0
            return max(seconds, 0.001)
        finally:
            self._finish(name, pool, watcher)

    def scaling(self) -> dict[str, Any]:
        o = self.options
        self.sandbox.set_latency(o.backend_latency_s)
        caps = {"whm1": 256}
        rates = []
        for processes in (1, 2):
            rate, _ = self._queued_run(f"scaling{processes}", self._bodies(o.scaling_commands, f"sc{processes}"),
                                       caps, processes=processes, threads=o.threads)
            rates.append(rate)
        return {"backend_latency_s": o.backend_latency_s, "threads": o.threads,
                "one_process_cps": round(rates[0], 1), "two_process_cps": round(rates[1], 1),
                "ratio": round(rates[1] / rates[0], 3),
                "backend_bound_cps": [round(p * o.threads / o.backend_latency_s, 1) for p in (1, 2)]}

    def memory(self) -> dict[str, Any]:
        """Redis bytes per command admitted and queued (a worker that ingests but runs only urgent),
        with the bench's short ids (``mem-123``) and again with 36-character UUID ids.

        It runs first, and each run's keys are deleted after it, so both runs start from the same
        nearly empty keyspace: Redis' keyspace tables double at powers of two, and a doubling
        caused by earlier phases' keys would land on whichever run crossed it. A short run before
        them takes Redis' one-time allocations (scripts, the first stream and queue), which read
        as 60 B per command more on whichever run came first."""
        self._memory_run("memory_warmup", uuid_ids=False, commands=200)
        figures = self._memory_run("memory", uuid_ids=False)
        uuids = self._memory_run("memory_uuid", uuid_ids=True)
        figures["bytes_per_command_uuid_ids"] = uuids["bytes_per_command"]
        return figures

    def _memory_run(self, name: str, *, uuid_ids: bool, commands: int | None = None) -> dict[str, Any]:
        o = self.options
        count = commands or o.memory_commands
        phase = self.phase(name)
        pool = start_mailops(self.redis_url, self.config("memory", {"whm1": 8}), phase, processes=1,
                             threads=o.threads, queues="urgent")
        watcher = EventWatcher(self.client, phase.events_stream).start()
        try:
            time.sleep(0.5)
            before = used_memory(self.client)
            xadd_many(self.client, phase.commands_stream,
                      self._bodies(count, "mem", priority="bulk", uuid_ids=uuid_ids))
            if not watcher.wait_accepted(count, PHASE_TIMEOUT_S):
                raise TimeoutError(f"memory: {watcher.accepted} of {count} commands accepted in time")
            after = used_memory(self.client)
            keys = Keys(phase.prefix)
            parts = {
                "record": self.client.memory_usage(keys.command("mem-0")) or 0,
                "commands_stream": (self.client.memory_usage(phase.commands_stream, samples=0) or 0) / count,
                "events_stream": (self.client.memory_usage(phase.events_stream, samples=0) or 0) / count,
                "dramatiq_queue": ((self.client.memory_usage(keys.dramatiq.queue("bulk"), samples=0) or 0)
                                   + (self.client.memory_usage(keys.dramatiq.messages("bulk"), samples=0) or 0))
                / count,
            }
        finally:
            self._finish(name, pool, watcher)
            self.delete_keys(phase.prefix)
        return {"commands": count, "accepted": watcher.accepted,
                "bytes_per_command": round((after - before) / count, 1),
                "bytes_per_command_by_key": {k: round(v, 1) for k, v in parts.items()}}

    def delete_keys(self, prefix: str) -> None:
        """Delete one phase's keys (they all start with its prefix)."""
        for key in self.client.scan_iter(match=f"{prefix}*", count=1000):
            self.client.unlink(key)

    def cleanup(self) -> None:
        for prefix in self.prefixes:
            self.delete_keys(prefix)
        self.client.close()
