"""``mailops reconcile``: do the panels show what the holds and the last commands say? With
``--apply``, converge them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
import orjson
import redis

from workers.backends.registry import build_backends
from workers.cli.acting import Acting, as_operator, await_outcomes, issue, operator_option, wait_options
from workers.cli.environment import load_settings
from workers.cli.exit_codes import RET_CONNECT, RET_FAILED, RET_OK, RET_UNKNOWN
from workers.ingest.auth import sealer_for
from workers.settings import Settings
from workers.stop_signal import stop_on_signals
from workers.store.redis_client import connect
from workers.tools.reconcile import Finding, check, converging_command
from workers.tools.reconcile_service import DriftGauges, run_rounds, seconds_of


def serve_rounds(settings: Settings, period: float, *, only: str | None, acting: Acting | None,
                 metrics_port: int | None) -> None:
    """``--every``: reconcile rounds until SIGTERM or Ctrl-C."""
    client = connect(settings, max_connections=2)
    backends = build_backends(settings.backends)
    gauges = DriftGauges()
    if metrics_port is not None:
        gauges.serve(metrics_port)
    stop = stop_on_signals()

    seal = seal_of(settings)

    def fix(findings: list[Finding]) -> None:
        assert acting is not None
        bodies = [body for finding in findings if (body := converging_command(finding, seal=seal)) is not None]
        for body in issue(client, settings, acting, "reconcile.apply", bodies)[1]:
            say_issued(body)

    click.echo(f"mailops reconcile: a round every {period:g} s", err=True)
    try:
        run_rounds(client, settings, backends, every_s=period, gauges=gauges, stop=stop, only=only,
                   fix=fix if acting is not None else None)
    finally:
        for backend in backends.values():
            backend.close()
        client.close()


@click.command()
@click.option("--backend", "only", default=None, help="Check only targets on this configured backend.")
@click.option("--apply", "do_apply", is_flag=True, help="Issue the commands that converge each difference.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per target+aspect.")
@click.option("--every", default=None, metavar="PERIOD",
              help="Run as a service: a round every PERIOD (90s, 30m, 1h), a drift_found event per differing "
                   "target, gauges on --metrics-port.")
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=None,
              help="With --every: serve mailops_reconcile_targets{backend,state} here.")
@operator_option
@wait_options
def reconcile(only: str | None, do_apply: bool, as_json: bool, every: str | None, metrics_port: int | None,
              operator_name: str | None, wait: bool, timeout: float) -> None:
    """Compare the panels' actual state with the holds and the last commands; report differences.

    With --apply, issue the converging commands signed by the operator (action
    ``reconcile.apply``; its ``reasons`` must cover the holds' reasons and ``reconcile``) and wait
    for them. Exit 0 when every target was read and matches (or every fix succeeded), 1 when
    differences remain (or a fix failed), 6 when nothing differs but some state could not be read
    (``unknown`` is never counted as a match). With --every it runs until stopped (SIGTERM/Ctrl-C).

    \b
    Examples:
      mailops reconcile --backend whm1
      mailops reconcile --apply
      mailops reconcile --every 1h --apply --metrics-port 9470
    """
    settings = load_settings()
    acting = as_operator(settings, operator_name, "reconcile.apply") if do_apply else None
    if every is not None:
        try:
            period = seconds_of(every)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--every") from None
        serve_rounds(settings, period, only=only, acting=acting, metrics_port=metrics_port)
        raise SystemExit(RET_OK)
    client = connect(settings, max_connections=2)
    backends = build_backends(settings.backends)
    try:
        findings = check(client, settings.keys, backends, only=only)
        seal = seal_of(settings)
        bodies = [body for finding in findings if (body := converging_command(finding, seal=seal)) is not None]
        sender, issued = issue(client, settings, acting, "reconcile.apply", bodies) if acting else (None, [])
    except redis.RedisError as exc:
        click.echo(f"mailops reconcile: Redis unreachable: {type(exc).__name__}", err=True)
        raise SystemExit(RET_CONNECT) from None
    finally:
        for backend in backends.values():
            backend.close()
    for finding in findings:
        if as_json:
            click.echo(orjson.dumps(finding.as_dict()).decode())
            continue
        click.echo(finding.summary())
    for body in issued:
        say_issued(body)
    drift = sum(f.state == "drift" for f in findings)
    unknown = sum(f.state == "unknown" for f in findings)
    click.echo(f"{len(findings)} checked, {drift} differ, {unknown} unknown"
               + (f", {len(issued)} command(s) issued" if do_apply else ""), err=True)
    try:
        code = RET_OK if drift == 0 or do_apply else RET_FAILED
        if sender is not None and issued and wait:
            code = await_outcomes(sender, [str(body["id"]) for body in issued], timeout=timeout)
        raise SystemExit(RET_UNKNOWN if code == RET_OK and unknown else code)
    finally:
        client.close()


def seal_of(settings: Settings) -> Callable[[str, str], str] | None:
    """The sealer's ``seal`` when a sealing key is configured (a re-created mailbox's password is
    sealed before it is sent)."""
    sealer = sealer_for(settings)
    return sealer.seal if sealer is not None else None


def say_issued(body: dict[str, Any]) -> None:
    click.echo(f"issued {body['command']} {body['id']}" + (f" (reason {body['reason']})" if "reason" in body else ""))
