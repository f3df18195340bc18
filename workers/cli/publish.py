"""``mailops publish``: send one command, from flags or JSON, signed as its sender, and wait for its outcome."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import orjson

from workers.cli.acting import (
    Acting,
    as_operator,
    as_producer,
    await_outcomes,
    issue,
    operator_option,
    wait_options,
)
from workers.cli.config import connected_settings
from workers.cli.exit_codes import RET_OK, RET_USAGE
from workers.tools.producer import new_command_id


def parse_args(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--arg user=example`` pairs as the command's args (values are strings; JSON with ``:=``)."""
    args: dict[str, Any] = {}
    for pair in pairs:
        if ":=" in pair:
            name, _, raw = pair.partition(":=")
            try:
                args[name] = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise click.BadParameter(f"{pair!r}: the value after := must be JSON", param_hint="--arg") from None
        elif "=" in pair:
            name, _, value = pair.partition("=")
            args[name] = value
        else:
            raise click.BadParameter(f"{pair!r}: expected NAME=VALUE", param_hint="--arg")
    return args


@click.command()
@click.argument("command", required=False)
@click.option("-a", "--arg", "arg_pairs", multiple=True, metavar="NAME=VALUE",
              help="A command argument (repeatable); NAME:=JSON for non-string values.")
@click.option("-b", "--backend", help="Backend to run on (default: resolved from the target).")
@click.option("--producer", help="Send as this configured producer, signed with its key (default: as the operator).")
@operator_option
@click.option("--id", "command_id", help="Idempotency key (default: a fresh one).")
@click.option("--priority", type=click.Choice(["urgent", "default", "bulk"]), help="Queue class.")
@click.option("--reason", help="Who owns a suspension (abuse, billing, ...).")
@click.option("--json", "json_body", metavar="JSON|-|@FILE",
              help="The whole command as JSON ('-' reads stdin, @FILE a file); flags fill in missing fields.")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Sign with this key instead of the configured one (a producer outside the backends file).")
@wait_options
def publish(command: str | None, arg_pairs: tuple[str, ...], backend: str | None, producer: str | None,
            operator_name: str | None, command_id: str | None, priority: str | None, reason: str | None,
            json_body: str | None, key_file: Path | None, wait: bool, timeout: float) -> None:
    """Publish one command, signed, and wait for its terminal event (exit 0 only if it succeeded).

    Sends as the operator (action ``publish``) unless --producer names a configured producer;
    prints the id, then the terminal event as JSON. A rejected or failed command exits 1 with the
    reason on stderr.

    \b
    Examples:
      mailops publish suspend_outgoing --arg user=example --backend whm1
      mailops publish --producer billing --json '{"command": "unsuspend_outgoing", "backend": "whm1", "args": {"user": "example"}}'
    """
    body: dict[str, Any] = _read_json(json_body) if json_body else {}
    if command:
        body["command"] = command
    if arg_pairs:
        body["args"] = {**body.get("args", {}), **parse_args(arg_pairs)}
    if "command" not in body:
        click.echo("mailops publish: give COMMAND or --json with a 'command' field", err=True)
        sys.exit(RET_USAGE)
    settings, client = connected_settings()
    producer = producer or (str(body["producer"]) if body.get("producer") else None)
    acting = as_producer(settings, producer, "publish") if producer else as_operator(settings, operator_name, "publish")
    if key_file is not None:
        acting = Acting(acting.producer, key_file.read_bytes().strip(), acting.operator)
    fields = {"backend": backend, "priority": priority, "reason": reason}
    body = {k: v for k, v in body.items() if k not in {"id", "command", "args", "producer", "signature"}} | {
        "id": command_id or str(body.get("id") or new_command_id("cli")), "command": str(body["command"]),
        "args": body.get("args", {}), **{name: value for name, value in fields.items() if value is not None}}
    sender, (sent,) = issue(client, settings, acting, "publish", [body])
    click.echo(sent["id"])
    if wait:
        sys.exit(await_outcomes(sender, [sent["id"]], timeout=timeout))
    sys.exit(RET_OK)


def _read_json(value: str) -> dict[str, Any]:
    if value == "-":
        raw = sys.stdin.read()
    elif value.startswith("@"):
        raw = Path(value[1:]).read_text(encoding="utf-8")
    else:
        raw = value
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--json") from None
    if not isinstance(data, dict):
        raise click.BadParameter("the command must be a JSON object", param_hint="--json")
    return data
