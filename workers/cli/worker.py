"""``mailops worker``: run worker processes until SIGTERM, then drain and exit 0."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import sys
from types import FrameType

import click
import redis

from workers import constants
from workers.cli.environment import settings_with_redis
from workers.cli.exit_codes import RET_CONFIG, RET_CONNECT, RET_FAILED, RET_OK
from workers.cli.health import check_option
from workers.errors import ConfigError
from workers.observability import start_observability
from workers.runtime import Runtime
from workers.settings import Settings
from workers.stop_signal import stop_on_signals, wait_for_stop

logger = logging.getLogger(__name__)

#: Default GIL switch interval of a worker process, in ms (Python's own is 5): measured in
#: docs/performance.md, it cuts the latency tail at no throughput cost measurable here.
SWITCH_INTERVAL_MS = 2.0


def serve(settings: Settings, threads: int, queues: tuple[str, ...], drain_timeout_s: float,
          metrics_port: int | None = None, json_logs: bool = False,
          switch_interval_ms: float = SWITCH_INTERVAL_MS) -> int:
    """Run one worker process in the foreground until SIGTERM/SIGINT; return its exit code."""
    stop = stop_on_signals()
    # How long a thread may keep the GIL while others wait: the worker's threads mostly wait on
    # sockets, and each wake-up queues behind whichever thread holds the interpreter.
    sys.setswitchinterval(switch_interval_ms / 1000)
    try:
        metrics = start_observability(settings, metrics_port=metrics_port, json_logs=json_logs)
        warn_insecure_backends(settings)
        runtime = Runtime(settings, threads=threads, queues=queues, metrics=metrics).start()
    except redis.ConnectionError as exc:
        click.echo(f"mailops worker: cannot reach Redis: {exc}", err=True)
        return RET_CONNECT
    except ConfigError as exc:
        click.echo(f"mailops worker: configuration error: {exc}", err=True)
        return RET_CONFIG
    click.echo(f"mailops worker {runtime.worker_id}: {threads} threads on {', '.join(queues)} "
               f"(GIL switch interval {sys.getswitchinterval() * 1000:g} ms)", err=True)
    wait_for_stop(stop)
    click.echo(f"mailops worker {runtime.worker_id}: draining (up to {drain_timeout_s:g}s)", err=True)
    runtime.stop(drain_timeout_ms=int(drain_timeout_s * 1000))
    return RET_OK


def warn_insecure_backends(settings: Settings) -> None:
    """Log a WARNING for each backend called over plain http:// (allowed only by allow_insecure_http)."""
    for name, backend in sorted(settings.backends.items()):
        if backend.is_insecure:
            logger.warning("backend %s: calls go over plain http:// (allow_insecure_http = true); "
                           "its token crosses the network unencrypted", name)


def _child(settings: Settings, threads: int, queues: tuple[str, ...], drain_timeout_s: float,
           metrics_port: int | None, json_logs: bool, switch_interval_ms: float) -> None:
    sys.exit(serve(settings, threads, queues, drain_timeout_s, metrics_port, json_logs, switch_interval_ms))


@click.command()
@check_option
@click.option("-p", "--processes", default=1, show_default=True, type=click.IntRange(1, 64), help="Worker processes.")
@click.option("-t", "--threads", default=8, show_default=True, type=click.IntRange(1, 512), help="Threads per process.")
@click.option("-q", "--queues", default=",".join(constants.QUEUES), show_default=True,
              help="Comma-separated queues to consume (urgent, default, bulk).")
@click.option("--drain-timeout", default=30.0, show_default=True, type=float,
              help="Seconds SIGTERM waits for in-flight commands before handing them back.")
@click.option("--metrics-port", type=click.IntRange(1, 65535),
              help="Serve Prometheus /metrics on this port (process i of -p N uses port + i).")
@click.option("--json-logs", is_flag=True, help="Log one JSON object per line, with the command id.")
@click.option("--switch-interval", default=SWITCH_INTERVAL_MS, show_default=True, type=click.FloatRange(0.1, 100),
              help="GIL switch interval in ms: lower trims latency tails, higher favours throughput.")
def worker(processes: int, threads: int, queues: str, drain_timeout: float, metrics_port: int | None,
           json_logs: bool, switch_interval: float) -> None:
    """Run workers: ingest the commands stream and execute commands until SIGTERM.

    \b
    Example:
      mailops worker -p 2 -t 8 --metrics-port 9464
    """
    names = tuple(q.strip() for q in queues.split(",") if q.strip())
    unknown = set(names) - set(constants.QUEUES)
    if unknown:
        raise click.BadParameter(f"unknown queue(s) {sorted(unknown)}; known: {', '.join(constants.QUEUES)}")
    with settings_with_redis() as settings:
        if processes == 1:
            sys.exit(serve(settings, threads, names, drain_timeout, metrics_port, json_logs, switch_interval))
        ctx = multiprocessing.get_context("spawn")
        children = [ctx.Process(target=_child, args=(settings, threads, names, drain_timeout,
                                                     metrics_port + i if metrics_port else None, json_logs,
                                                     switch_interval))
                    for i in range(processes)]
        for child in children:
            child.start()

        def forward(signum: int, frame: FrameType | None) -> None:
            for child in children:
                if child.pid is not None and child.is_alive():
                    child.terminate()

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        for child in children:
            child.join()
        sys.exit(RET_OK if all(c.exitcode == 0 for c in children) else RET_FAILED)
