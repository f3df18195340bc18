"""``mailops bench``: the whole pipeline measured next to plain Dramatiq, against issue 8's targets."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from workers.bench.options import BenchOptions
from workers.bench.report import machine, render, render_readback, verdicts
from workers.bench.run import run_bench, run_readback_bench
from workers.cli.environment import load_settings
from workers.cli.exit_codes import RET_OK
from workers.stop_signal import interrupt_on_sigterm


@click.command()
@click.option("--redis-url", default=None, help="Redis to use (default: MAILOPS_REDIS_URL, else a private one).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write every figure to this JSON file.")
@click.option("--quick", is_flag=True,
              help="Smaller runs (about 40 s): fewer commands, 2,000 bulk instead of 20,000, no read-back phase.")
@click.option("--commands", type=click.IntRange(10, 1_000_000), default=None,
              help="Commands in the throughput runs (default 3000; quick 600).")
@click.option("--rounds", type=click.IntRange(1, 99), default=None,
              help="Floor-then-mailops pairs in the throughput run; the median ratio is reported (default 3; quick 1).")
@click.option("--bulk", type=click.IntRange(10, 1_000_000), default=None,
              help="Bulk commands queued during the urgent run (default 20000; quick 2000).")
@click.option("-p", "--processes", default=1, show_default=True, type=click.IntRange(1, 16),
              help="Worker processes in the throughput and latency runs.")
@click.option("-t", "--threads", default=8, show_default=True, type=click.IntRange(1, 256),
              help="Threads per worker process.")
@click.option("--readback-only", is_flag=True,
              help="Run only the read-back phase: throughput and p99 with read-back off, then on.")
def bench(redis_url: str | None, json_path: Path | None, quick: bool, commands: int | None, rounds: int | None,
          bulk: int | None, processes: int, threads: int, readback_only: bool) -> None:
    """Measure throughput, latency, utilisation, cost and scaling; print PASS/MISS per target.

    \b
    Examples:
      mailops bench --quick
      mailops bench --quick --readback-only
    """
    interrupt_on_sigterm()
    overrides: dict[str, object] = {"processes": processes, "threads": threads,
                                    "redis_url": redis_url or load_settings().redis_url}
    if commands is not None:
        overrides["commands"] = commands
    if rounds is not None:
        overrides["rounds"] = rounds
    if bulk is not None:
        overrides["bulk"] = bulk
    options = BenchOptions.quick(**overrides) if quick else BenchOptions(**overrides)  # type: ignore[arg-type]

    def progress(text: str) -> None:
        click.echo(f"mailops bench: {text}", err=True)

    if readback_only:
        figures = run_readback_bench(options, progress)
        if json_path is not None:
            json_path.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2))
        click.echo(f"machine: {machine()}\n{render_readback(figures['readback'])}")
        sys.exit(RET_OK)
    figures = run_bench(options, progress)
    figures["machine"] = machine()
    figures["targets"] = verdicts(figures)
    if json_path is not None:
        json_path.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    click.echo(render(figures))
    sys.exit(RET_OK)
