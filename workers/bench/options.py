"""What one ``mailops bench`` run does: its phases' sizes, rates and caps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BenchOptions:
    """What one ``mailops bench`` run does."""

    redis_url: str | None = None
    commands: int = 3000
    #: Floor-then-mailops pairs in the throughput run (the median ratio is reported).
    rounds: int = 3
    processes: int = 1
    threads: int = 8
    #: Fraction of the measured maximum rate the latency run is paced at.
    load_fraction: float = 0.5
    latency_duration_s: float = 20.0
    #: Seconds of paced commands sent first and not counted (new worker processes open their
    #: connections and warm up; reported apart as ``latency.warmup``).
    latency_warmup_s: float = 1.0
    bulk: int = 20_000
    urgent: int = 40
    backend_latency_s: float = 0.05
    #: Per-backend cap of the utilisation run (two backends).
    cap: int = 4
    utilisation_commands: int = 1200
    #: Seconds the direct client runs to measure the backends' ceiling under the caps.
    ceiling_s: float = 5.0
    scaling_commands: int = 800
    memory_commands: int = 5000
    #: The fairness run: this many bulk commands for a slow backend (200 ms, cap 2), queued just
    #: ahead of as many for a fast one (5 ms, cap 8), against the fast ones alone.
    fairness_commands: int = 600
    #: The fleet run (workers.bench.fleet): backends (the first migrating), commands per fast
    #: backend, and the slow one's migration.
    fleet_backends: int = 50
    fleet_per_backend: int = 20
    fleet_migration: int = 1500
    #: The trickle run (workers.bench.trickle): commands for the trickling panel queued first, and
    #: seconds of commands paced to the healthy backend in each of its two runs.
    trickle_commands: int = 20
    trickle_duration_s: float = 10.0
    #: Run the read-back phase (off in ``--quick``, which the test suite runs; ``--readback-only``
    #: runs it alone).
    readback: bool = True

    @classmethod
    def quick(cls, **overrides: Any) -> BenchOptions:
        values: dict[str, Any] = dict(commands=600, rounds=1, latency_duration_s=3.0, latency_warmup_s=0.5,
                                      bulk=2000, urgent=15,
                                      utilisation_commands=240, scaling_commands=240, memory_commands=500,
                                      fairness_commands=100, fleet_backends=10, fleet_per_backend=10, fleet_migration=200,
                                      trickle_commands=6, trickle_duration_s=3.0, ceiling_s=2.0, readback=False)
        values.update(overrides)
        return cls(**values)
