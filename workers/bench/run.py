"""One whole ``mailops bench`` run: its Redis, sandbox and work folder, and every phase in turn."""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from workers.bench.fleet import fleet
from workers.bench.harness import SandboxProcess
from workers.bench.options import BenchOptions
from workers.bench.scenarios import USERS, Bench
from workers.bench.trickle import trickle
from workers.store.embedded_redis import EmbeddedRedis


@contextlib.contextmanager
def bench_environment(options: BenchOptions) -> Iterator[Bench]:
    with contextlib.ExitStack() as stack:
        url = options.redis_url
        if url is None:
            url = stack.enter_context(EmbeddedRedis()).url
        sandbox = SandboxProcess(backends=2, users=USERS)
        stack.callback(sandbox.stop)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mailops-bench-")))
        bench = Bench(options, url, sandbox, workdir)
        stack.callback(bench.cleanup)
        yield bench


def run_readback_bench(options: BenchOptions, progress: Any = print) -> dict[str, Any]:
    """Only the read-back phase (``mailops bench --readback-only``)."""
    figures: dict[str, Any] = {"options": asdict(options)}
    with bench_environment(options) as bench:
        figures["readback"] = _readback(bench, progress)
    return figures


def _readback(bench: Bench, progress: Any) -> dict[str, Any]:
    progress("read-back: throughput and latency with it off, then on")
    return bench.readback()


def run_bench(options: BenchOptions, progress: Any = print) -> dict[str, Any]:
    """Run every phase; return all figures (see :mod:`workers.bench.report` for the targets)."""
    figures: dict[str, Any] = {"options": asdict(options)}
    with bench_environment(options) as bench:
        progress("cost: Redis memory per queued command")
        figures["memory"] = bench.memory()
        progress("throughput: mailops and the plain-Dramatiq floor")
        figures["throughput"] = bench.throughput()
        progress("latency: mailops' rate now, then commands paced at a fraction of it")
        max_rate = bench.max_rate_now()
        progress(f"latency at {options.load_fraction:.0%} of {max_rate:.1f} commands/s")
        figures["latency"] = bench.latency(max_rate if math.isfinite(max_rate) else 10.0)
        progress(f"urgent commands while {options.bulk} bulk commands are queued")
        figures["urgent_under_bulk"] = bench.urgent_under_bulk()
        progress("backend utilisation under caps")
        figures["utilisation"] = bench.utilisation()
        progress("fairness: a fast backend's batch alone, then queued behind a slow backend's")
        figures["fairness"] = bench.fairness()
        progress("fleet: 50 backends, one migrating slowly, the others' batch and urgent commands")
        figures["fleet"] = fleet(bench)
        progress("trickle: a healthy backend's latency alone, then beside a panel answering a byte a second")
        figures["trickle"] = trickle(bench)
        progress("scaling: 1 and 2 worker processes, backend-bound")
        figures["scaling"] = bench.scaling()
        if options.readback:
            figures["readback"] = _readback(bench, progress)
        figures["peak_rss_bytes"] = bench.peak_rss
    return figures
