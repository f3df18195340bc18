"""The demo: a private Redis, sandbox panels, a worker, and commands from three kinds of producer.

It prints each event as it arrives and returns once every command has its terminal event.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from pydantic import SecretStr

from schemas.events import Event
from workers.runtime import Runtime
from workers.sandbox import SandboxServer
from workers.sandbox.whm import WhmSandbox
from workers.settings import BackendConfig, Settings

DEMO_WHM_TOKEN = "demo-whm-token"


@dataclass(frozen=True)
class DemoCommand:
    producer_kind: str
    body: dict[str, Any] | bytes


def demo_commands() -> list[DemoCommand]:
    at = "2026-11-22T10:00:00Z"

    def cmd(id: str, command: str, args: dict[str, Any], producer: str, **extra: Any) -> dict[str, Any]:
        return {"id": id, "command": command, "backend": "whm1", "args": args, "producer": producer,
                "issued_at": at, **extra}

    return [
        DemoCommand("abuse detection", cmd("demo-abuse-1", "suspend_outgoing", {"user": "spammer"}, "abuse-detector")),
        DemoCommand("billing webhook", cmd("demo-billing-1", "unsuspend_outgoing", {"user": "paidup"}, "billing")),
        DemoCommand("billing webhook", cmd("demo-billing-2", "suspend_outgoing", {"user": "ghost"}, "billing")),
        DemoCommand("bulk migration", cmd("demo-migration-1", "suspend_outgoing", {"user": "moving"}, "migration",
                                          priority="bulk")),
        DemoCommand("billing webhook (retried)", cmd("demo-billing-1", "unsuspend_outgoing", {"user": "paidup"}, "billing")),
        DemoCommand("broken producer", b'{"command": "suspend_outgoing", "backend": "whm1", "args": {"user": "a&user=root"}, '
                                        b'"producer": "billing"}'),
    ]


@contextlib.contextmanager
def demo_environment(settings: Settings) -> Iterator[tuple[Settings, dict[str, SandboxServer]]]:
    """Sandboxes with demo accounts, and settings that point the worker at them."""
    whm_app = WhmSandbox(token=DEMO_WHM_TOKEN)
    for user in ("spammer", "paidup", "moving"):
        whm_app.add_account(user)
    whm_app.state.accounts["paidup"].outgoing = "suspended"
    with SandboxServer(whm_app) as whm:
        backends = {
            "whm1": BackendConfig(name="whm1", kind="whm", url=whm.url, token=SecretStr(DEMO_WHM_TOKEN)),
        }
        yield settings.model_copy(update={"backends": backends}), {"whm1": whm}


def run_demo(settings: Settings, echo: Callable[[Event, str], None], *, timeout_s: float = 60.0) -> bool:
    """Run the demo; True when every command got its terminal event in time."""
    with demo_environment(settings) as (demo_settings, _servers):
        client = redis.Redis.from_url(demo_settings.redis_url or "")
        runtime = Runtime(demo_settings, threads=4).start()
        try:
            commands = demo_commands()
            entries: dict[str, str] = {}
            for item in commands:
                body = item.body if isinstance(item.body, bytes) else orjson.dumps(item.body)
                entry_id: Any = client.xadd(demo_settings.commands_stream, {"body": body})
                entry = entry_id.decode()
                entries[entry] = item.producer_kind
                # The retried webhook is sent after the first copy has finished, as a real retry would be.
                if item.producer_kind == "billing webhook":
                    time.sleep(0.3)
            return _follow(client, demo_settings.events_stream, entries, echo, timeout_s)
        finally:
            runtime.stop(drain_timeout_ms=5000)
            client.close()


def _follow(client: redis.Redis, stream: str, entries: dict[str, str], echo: Callable[[Event, str], None],
            timeout_s: float) -> bool:
    """Print events until each stream entry has been answered with a terminal event."""
    answered: set[str] = set()
    entry_of_id: dict[str, str] = {}
    last = "0-0"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reply: Any = client.xread({stream: last}, block=200, count=100)
        for _stream, items in reply or []:
            for eid, fields in items:
                last = eid.decode()
                event = Event.from_json(fields[b"body"])
                if event.entry:
                    if event.id:
                        entry_of_id[event.id] = event.entry
                    key = event.entry
                else:
                    key = entry_of_id.get(event.id or "", "")
                echo(event, entries.get(key, ""))
                if event.terminal and key:
                    answered.add(key)
        if answered >= set(entries):
            return True
    return False
