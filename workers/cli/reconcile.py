"""``mailops reconcile``: do the panels show what the holds say? With ``--apply``, converge them."""

from __future__ import annotations

import click
import orjson
import redis

from workers.backends.registry import build_backends
from workers.cli.acting import as_operator, await_outcomes, issue, operator_option, wait_options
from workers.cli.environment import load_settings
from workers.cli.exit_codes import RET_CONNECT, RET_FAILED, RET_OK, RET_UNKNOWN
from workers.reconcile import check, converging_command
from workers.redis_client import connect


@click.command()
@click.option("--backend", "only", default=None, help="Check only targets on this configured backend.")
@click.option("--apply", "do_apply", is_flag=True, help="Issue the commands that converge each difference.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per target+aspect.")
@operator_option
@wait_options
def reconcile(only: str | None, do_apply: bool, as_json: bool, operator_name: str | None, wait: bool,
              timeout: float) -> None:
    """Compare the panels' actual suspension state with the holds and report differences.

    With --apply, issue the converging commands signed by the operator (action
    ``reconcile.apply``; its ``reasons`` must cover the holds' reasons and ``reconcile``) and wait
    for them. Exit 0 when every target was read and matches (or every fix succeeded), 1 when
    differences remain (or a fix failed), 6 when nothing differs but some state could not be read
    (``unknown`` is never counted as a match).

    \b
    Examples:
      mailops reconcile --backend whm1
      mailops reconcile --apply
    """
    settings = load_settings()
    acting = as_operator(settings, operator_name, "reconcile.apply") if do_apply else None
    client = connect(settings, max_connections=2)
    backends = build_backends(settings.backends)
    try:
        findings = check(client, settings.keys, backends, only=only)
        bodies = [body for finding in findings if (body := converging_command(finding)) is not None]
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
        row = finding.as_dict()
        held = ", ".join(row["held_by"]) or "no hold"
        click.echo(f"{row['state']:7} {finding.target} {finding.aspect} on {finding.backend}: holds say "
                   f"{row['expected']} ({held}), panel says {row['panel'] or 'unknown'}"
                   + (f" - {finding.note}" if finding.note else ""))
    for body in issued:
        click.echo(f"issued {body['command']} {body['id']} (reason {body['reason']})")
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
