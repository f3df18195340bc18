"""The fleet phase: many backends, one of them slow and migrating, the others serving their own work.

Issue 21's fleet question: while one server's migration trickles through its cap, do the other
servers' commands keep their pace, and do urgent commands stay quick? One sandbox process serves
``fleet_backends`` WHM backends (50); ``whm1`` answers in 200 ms and holds a deep bulk migration, the rest
answer in 5 ms. The fast backends' batch runs alone, then again queued behind the migration, while
urgent commands for the fast backends are paced throughout; two worker processes run everything.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from workers.bench.commands import command_body, xadd_many
from workers.bench.harness import Phase, SandboxProcess, start_mailops, write_config
from workers.bench.measure import EventWatcher, latency_summary_ms
from workers.bench.sandbox_proc import bench_users

if TYPE_CHECKING:
    from workers.bench.scenarios import Bench

#: Accounts on each sandbox backend.
USERS = 200
#: Concurrency cap of every backend.
CAP = 4
#: Answer times (s): the migrating backend, the others.
SLOW_S, FAST_S = 0.2, 0.005
#: Urgent commands paced during each run (per second), spread over the fast backends.
URGENT_RATE = 10.0
#: Worker processes and threads (2 cores here).
PROCESSES, THREADS = 2, 8
#: Longest a run may take.
RUN_TIMEOUT_S = 180.0


def fleet(bench: Bench) -> dict[str, Any]:
    """The fast backends' batch alone and behind the migration; urgent latency in both runs."""
    backends = bench.options.fleet_backends
    sandbox = SandboxProcess(backends=backends, users=USERS)
    try:
        sandbox.set_latency(FAST_S)
        sandbox.set_latency_of(0, SLOW_S)
        config = write_config(bench.workdir / "fleet.toml",
                              {f"whm{i + 1}": (url, CAP) for i, url in enumerate(sandbox.urls)}, verify=False)
        alone = _run(bench, sandbox, config, "fleet_alone", migration=False)
        sandbox.set_latency(FAST_S)
        sandbox.set_latency_of(0, SLOW_S)
        behind = _run(bench, sandbox, config, "fleet_migrating", migration=True)
        slow_in_flight = int(sandbox.stats(0)["max_in_flight"])
    finally:
        sandbox.stop()
    kept = behind["fast_cps"] / alone["fast_cps"] if alone["fast_cps"] else 0.0
    o = bench.options
    return {"backends": backends, "cap": CAP, "slow_latency_s": SLOW_S, "fast_latency_s": FAST_S,
            "migration": o.fleet_migration, "fast_commands": o.fleet_per_backend * (backends - 1),
            "processes": PROCESSES, "threads": THREADS, "alone": alone, "migrating": behind, "fast_throughput_kept": round(kept, 3),
            "slow_max_in_flight": slow_in_flight, "slow_cap_violations": slow_in_flight > CAP}


def _run(bench: Bench, sandbox: SandboxProcess, config: Any, name: str, *, migration: bool) -> dict[str, Any]:
    """Start the workers; queue the migration (if any) and wait until it is admitted; then queue the
    fast batch and, once it is admitted, pace urgent commands until the batch is done."""
    phase: Phase = bench.phase(name)
    users = bench_users(USERS)
    pool = start_mailops(bench.redis_url, config, phase, processes=PROCESSES, threads=THREADS)
    watcher = EventWatcher(bench.client, phase.events_stream).start()
    urgent: dict[str, float] = {}
    o = bench.options
    backends = o.fleet_backends
    fast_ids = [f"fast-{i}" for i in range(o.fleet_per_backend * (backends - 1))]
    try:
        if migration:
            xadd_many(bench.client, phase.commands_stream, [command_body(f"mig-{i}", users[i % USERS], backend="whm1", priority="bulk")
                                  for i in range(o.fleet_migration)])
            if not watcher.wait_accepted(o.fleet_migration, RUN_TIMEOUT_S):
                raise TimeoutError(f"{name}: the migration was not admitted in time")
        admitted = watcher.accepted
        xadd_many(bench.client, phase.commands_stream, [command_body(command_id, users[i % USERS], backend=_fast_backend(i, backends))
                              for i, command_id in enumerate(fast_ids)])
        if not watcher.wait_accepted(admitted + len(fast_ids), RUN_TIMEOUT_S):
            raise TimeoutError(f"{name}: the fast batch was not admitted in time")
        deadline = time.monotonic() + RUN_TIMEOUT_S
        start, i = time.perf_counter(), 0
        while not set(fast_ids) <= set(watcher.terminal):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: {len(set(fast_ids) & set(watcher.terminal))} of {len(fast_ids)} in time")
            if time.perf_counter() >= start + i / URGENT_RATE:
                command_id = f"urgent-{i}"
                body = command_body(command_id, users[(i * 7) % USERS], backend=_fast_backend(i, backends), priority="urgent")
                urgent[command_id] = time.perf_counter()
                bench.client.xadd(phase.commands_stream, {"body": body})
                i += 1
            time.sleep(0.005)
        settle = time.monotonic() + 10
        while not set(urgent) <= set(watcher.terminal) and time.monotonic() < settle:
            time.sleep(0.02)
    finally:
        watcher.stop()
        pool.stop()
    migrated = sum(1 for k in watcher.terminal if k.startswith("mig-"))
    seen = [watcher.terminal[k].seen - t for k, t in urgent.items() if k in watcher.terminal]
    return {"fast_cps": round(watcher.rate(set(fast_ids)), 1),
            "urgent": {**latency_summary_ms(seen), "sent": len(urgent), "missing": len(urgent) - len(seen)},
            "migrated_by_then": migrated}


def _fast_backend(i: int, backends: int) -> str:
    return f"whm{2 + i % (backends - 1)}"

