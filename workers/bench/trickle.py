"""The trickle phase: a healthy backend's latency beside a panel that answers a byte a second.

Issue 22's question: a trickling panel (:class:`~workers.sandbox.trickle.TricklingPanel`) must not
take more threads than its backend's cap, and every call to it ends by its deadline, so a healthy
backend served by the same workers keeps its latency. Commands for the healthy backend are paced
alone, then again with commands for the trickling one queued first (each of their calls hangs
until the 5 s deadline, then retries); the healthy commands' latency is compared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workers.bench.commands import command_body, xadd_many
from workers.bench.harness import start_mailops, write_config
from workers.bench.measure import EventWatcher
from workers.sandbox.trickle import TricklingPanel

if TYPE_CHECKING:
    from pathlib import Path

    from workers.bench.scenarios import Bench

#: The healthy backend: answer time (s) and cap; the trickling one: cap, read timeout, call deadline (s).
HEALTHY_S, HEALTHY_CAP = 0.02, 8
SLOW_CAP, SLOW_READ_TIMEOUT_S, SLOW_DEADLINE_S = 2, 2.0, 5.0
#: Commands per second paced to the healthy backend.
RATE = 40.0


def trickle(bench: Bench) -> dict[str, Any]:
    """The healthy backend's paced latency alone, then beside the trickling panel."""
    o = bench.options
    bench.sandbox.set_latency(HEALTHY_S)
    with TricklingPanel() as panel:
        config = _config(bench.workdir / "trickle.toml", bench.sandbox.urls[0], panel.url)
        alone = _run(bench, config, "trickle_alone", slow=0)
        beside = _run(bench, config, "trickle_beside", slow=o.trickle_commands)
        longest = max((end - start for start, end in panel.calls), default=0.0)
        most = panel.most
    ratio = beside["p99_ms"] / alone["p99_ms"] if alone["p99_ms"] else None
    return {"rate_cps": RATE, "healthy_latency_s": HEALTHY_S, "healthy_cap": HEALTHY_CAP, "slow_cap": SLOW_CAP,
            "slow_read_timeout_s": SLOW_READ_TIMEOUT_S, "slow_deadline_s": SLOW_DEADLINE_S,
            "slow_commands": o.trickle_commands, "threads": o.threads, "alone": alone, "beside": beside,
            "p99_ratio": round(ratio, 3) if ratio is not None else None,
            "slow_calls": len(panel.calls), "slow_longest_call_s": round(longest, 2), "slow_max_in_flight": most,
            "slow_cap_violations": most > SLOW_CAP}


def _config(path: Path, healthy_url: str, slow_url: str) -> Path:
    return write_config(path, {"whm1": (healthy_url, HEALTHY_CAP), "slow": (slow_url, SLOW_CAP)}, verify=False,
                        extra={"slow": {"read_timeout": SLOW_READ_TIMEOUT_S, "call_deadline": SLOW_DEADLINE_S}})


def _run(bench: Bench, config: Path, name: str, *, slow: int) -> dict[str, Any]:
    o = bench.options
    phase = bench.phase(name)
    if slow:
        xadd_many(bench.client, phase.commands_stream,
                  [command_body(f"slow-{i}", f"s{i}", backend="slow") for i in range(slow)])
    pool = start_mailops(bench.redis_url, config, phase, processes=o.processes, threads=o.threads)
    watcher = EventWatcher(bench.client, phase.events_stream).start()
    try:
        warmup = int(RATE * o.latency_warmup_s)
        sent = bench.paced(phase, "ok", warmup + int(RATE * o.trickle_duration_s), RATE)
        watcher.wait_terminal(len(sent), 120.0)
    finally:
        watcher.stop()
        pool.stop()
    order = list(sent.items())[warmup:]
    return bench.latencies(dict(order), watcher)
