"""``mailops worker --check``: the liveness probe of containers, Kubernetes and systemd.

Green (exit 0) when Redis answers and at least one worker process has heartbeated within the
heartbeat timeout. Every worker process's Liveness middleware refreshes its entry in Dramatiq's
heartbeat set (``<prefix>:dq:__heartbeats__``, member = broker id, score = ms) every second, so
a stale set means no process is consuming: the probe goes red and the orchestrator restarts.
"""

from __future__ import annotations

import time

import click
import redis

from workers.cli.environment import load_settings
from workers.cli.exit_codes import RET_CONFIG, RET_CONNECT, RET_FAILED, RET_OK
from workers.errors import ConfigError
from workers.redis_client import connect
from workers.settings import Settings


def heartbeats_key(settings: Settings) -> str:
    """Dramatiq's sorted set of worker heartbeats in this deployment's namespace."""
    return f"{settings.keys.dramatiq_namespace}:__heartbeats__"


def check_liveness(settings: Settings, *, now_ms: int | None = None) -> tuple[int, str]:
    """Return an exit code and a one-line reason."""
    if not settings.redis_url:
        return RET_CONFIG, "no Redis configured (MAILOPS_REDIS_URL or MAILOPS_REDIS_SENTINELS)"
    try:
        client = connect(settings, max_connections=2)
    except ConfigError as exc:
        return RET_CONFIG, str(exc)
    try:
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        fresh = client.zcount(heartbeats_key(settings), now - settings.heartbeat_timeout_ms, "+inf")
    except redis.RedisError as exc:
        return RET_CONNECT, f"Redis unreachable: {type(exc).__name__}: {exc}"
    finally:
        client.close()
    if not fresh:
        return RET_FAILED, f"no worker heartbeat in the last {settings.heartbeat_timeout_ms} ms"
    return RET_OK, f"ok: {fresh} worker process(es) heartbeating"


def _check_callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    code, reason = check_liveness(load_settings())
    click.echo(f"mailops worker --check: {reason}", err=code != RET_OK)
    ctx.exit(code)


#: ``--check`` for ``mailops worker``: probe liveness and exit instead of running workers.
check_option = click.option(
    "--check", is_flag=True, is_eager=True, expose_value=False, callback=_check_callback,
    help="Exit 0 if Redis answers and a worker process heartbeated recently, non-zero otherwise (liveness probe).",
)
