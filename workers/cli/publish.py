"""``mailops publish``: send one command, from flags or JSON, and optionally wait for its outcome."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import orjson

from schemas.events import Event
from workers.cli.config import connected_settings
from workers.cli.exit_codes import RET_FAILED, RET_OK, RET_TIMEOUT, RET_USAGE
from workers.producer import Producer, WaitTimeout, build_body, new_command_id


def exit_code_for(event: Event) -> int:
    """Succeeded (also as the duplicate of a success) is 0; every other outcome is 1."""
    if event.status == "succeeded":
        return RET_OK
    if event.status == "duplicate":
        original = event.details.get("original") or {}
        return RET_OK if isinstance(original, dict) and original.get("status") == "succeeded" else RET_FAILED
    return RET_FAILED


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
@click.option("--producer", default="operator", show_default=True, help="Who is sending this.")
@click.option("--id", "command_id", help="Idempotency key (default: a fresh one).")
@click.option("--priority", type=click.Choice(["urgent", "default", "bulk"]), help="Queue class.")
@click.option("--reason", help="Who owns a suspension (abuse, billing, ...).")
@click.option("--json", "json_body", metavar="JSON|-|@FILE",
              help="The whole command as JSON ('-' reads stdin, @FILE a file); flags fill in missing fields.")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Producer signing key; the command is signed with HMAC-SHA256.")
@click.option("-w", "--wait", is_flag=True, help="Wait for the terminal event; exit 0 only if it succeeded.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds --wait waits (then exit 5).")
def publish(command: str | None, arg_pairs: tuple[str, ...], backend: str | None, producer: str,
            command_id: str | None, priority: str | None, reason: str | None, json_body: str | None,
            key_file: Path | None, wait: bool, timeout: float) -> None:
    """Publish one command; print its id (and with --wait its terminal event, as JSON).

    \b
    Examples:
      mailops publish suspend_outgoing --arg user=example --backend whm1 --wait
      mailops publish --json '{"command": "unsuspend_outgoing", "args": {"user": "example"}}'
    """
    body: dict[str, Any] = _read_json(json_body) if json_body else {}
    if command:
        body["command"] = command
    if arg_pairs:
        body["args"] = {**body.get("args", {}), **parse_args(arg_pairs)}
    if "command" not in body:
        click.echo("mailops publish: give COMMAND or --json with a 'command' field", err=True)
        sys.exit(RET_USAGE)
    key = key_file.read_bytes().strip() if key_file else None
    fields = {"backend": backend, "priority": priority, "reason": reason}
    body.pop("signature", None)
    extra = {k: v for k, v in body.items() if k not in {"id", "command", "args", "producer"}}
    for name, value in fields.items():
        if value is not None:
            extra[name] = value
    full = build_body(
        str(body["command"]), body.get("args", {}), producer=str(body.get("producer") or producer),
        id=command_id or str(body.get("id") or new_command_id("cli")), key=key, **extra,
    )
    settings, client = connected_settings()
    sender = Producer(client, producer=full["producer"], commands_stream=settings.commands_stream,
                      events_stream=settings.events_stream, keys=settings.keys)
    sent = sender.publish_body(full)
    click.echo(sent)
    if not wait:
        sys.exit(RET_OK)
    try:
        event = sender.wait(sent, timeout=timeout)
    except WaitTimeout as exc:
        click.echo(f"mailops publish: {exc}", err=True)
        sys.exit(RET_TIMEOUT)
    click.echo(event.to_json().decode())
    sys.exit(exit_code_for(event))


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
