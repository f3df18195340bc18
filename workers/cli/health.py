"""``mailops worker --check``: the liveness probe of containers, Kubernetes and systemd.

Green (exit 0) when Redis answers and a worker process **on this host** (this pod, this
container) has heartbeated within the heartbeat timeout. Every worker process's Liveness
middleware refreshes its entry in Dramatiq's heartbeat set (``<prefix>:dq:__heartbeats__``,
score = ms) every second; the entry is the process's worker id, ``<hostname>-<pid>-<random>``, so
the probe can tell this host's processes from the rest of the fleet's. A pod whose worker died
or lost Redis goes red even while other pods consume, and the orchestrator restarts it.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import click
import redis

from workers.cli.environment import load_settings
from workers.cli.exit_codes import RET_CONFIG, RET_CONNECT, RET_FAILED, RET_OK
from workers.errors import ConfigError
from workers.settings import Settings
from workers.store.redis_client import connect
from workers.store.wire import as_text


def heartbeats_key(settings: Settings) -> str:
    """Dramatiq's sorted set of worker heartbeats in this deployment's namespace."""
    return settings.keys.dramatiq.heartbeats


def host_of(worker_id: str) -> str:
    """The hostname part of a worker id (``<hostname>-<pid>-<random>``)."""
    return worker_id.rsplit("-", 2)[0]


def check_liveness(settings: Settings, *, host: str | None = None, now_ms: int | None = None) -> tuple[int, str]:
    """Return an exit code and a one-line reason; ``host`` defaults to this machine's hostname."""
    host = host or socket.gethostname()
    if not settings.redis_url:
        return RET_CONFIG, "no Redis configured (MAILOPS_REDIS_URL or MAILOPS_REDIS_SENTINELS)"
    try:
        client = connect(settings, max_connections=2)
    except ConfigError as exc:
        return RET_CONFIG, str(exc)
    try:
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        raw: Any = client.zrangebyscore(heartbeats_key(settings), now - settings.heartbeat_timeout_ms, "+inf")
    except redis.RedisError as exc:
        return RET_CONNECT, f"Redis unreachable: {type(exc).__name__}: {exc}"
    finally:
        client.close()
    fresh = [as_text(m) for m in raw]
    here = [m for m in fresh if host_of(m) == host]
    if not here:
        return RET_FAILED, (f"no worker heartbeat from this host ({host}) in the last {settings.heartbeat_timeout_ms} ms "
                            f"({len(fresh)} worker process(es) heartbeating elsewhere)")
    return RET_OK, f"ok: {len(here)} worker process(es) on this host heartbeating ({len(fresh)} in the fleet)"


def _check_callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    code, reason = check_liveness(load_settings())
    click.echo(f"mailops worker --check: {reason}", err=code != RET_OK)
    ctx.exit(code)


#: ``--check`` for ``mailops worker``: probe liveness and exit instead of running workers.
check_option = click.option(
    "--check", is_flag=True, is_eager=True, expose_value=False, callback=_check_callback,
    help="Exit 0 if Redis answers and a worker process on this host heartbeated recently, non-zero otherwise "
         "(liveness probe).",
)
