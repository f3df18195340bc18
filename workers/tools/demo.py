"""The demo: a private Redis, the three sandbox panels, a worker, and commands from three kinds of producer.

Abuse detection suspends outgoing mail (a WHM account, a cPanel mailbox), billing webhooks
unsuspend an account and create an ordered mailbox (and retry one webhook), a bulk migration
creates mailboxes and forwarders on BrainyCP (sealing its passwords itself); one fails with the
panel's own reason. Every command is signed (HMAC-SHA256) with its producer's key, made for this
run; one broken command, one with a forged signature and one outside its producer's allow-list are
rejected. It prints each event as it arrives and returns once every command has its
terminal event.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import redis
from pydantic import SecretStr

from schemas.events import Event
from workers.errors import ConfigError
from workers.ingest.auth import sealer_for
from workers.ingest.sealing import Sealer
from workers.ingest.signing import sign
from workers.runtime import Runtime
from workers.sandbox import SandboxServer
from workers.sandbox.brainycp import BrainycpSandbox
from workers.sandbox.cpanel import CpanelSandbox
from workers.sandbox.whm import WhmSandbox
from workers.settings import BackendConfig, ProducerConfig, Settings

DEMO_WHM_TOKEN = "demo-whm-token"
DEMO_CPANEL_TOKEN = "demo-cpanel-token"
DEMO_BRAINYCP_PASSWORD = "demo-brainy-pass"

#: What each demo producer may do: (commands, backends). Abuse detection may suspend and end
#: sessions but not delete mailboxes; migration may add mailboxes but not change owners.
DEMO_SCOPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "abuse-detector": (("suspend_outgoing", "unsuspend_outgoing", "suspend_incoming", "unsuspend_incoming",
                        "suspend_login", "unsuspend_login", "hold_outgoing", "release_outgoing",
                        "terminate_sessions"), ("*",)),
    "billing": (("suspend_outgoing", "unsuspend_outgoing", "suspend_login", "unsuspend_login",
                 "addmail", "delmail", "passwd"), ("*",)),
    "migration": (("addmail", "passwd", "addforward", "delforward"), ("cp1", "brainy1")),
}


def demo_producers() -> dict[str, ProducerConfig]:
    """The demo's producers, each with a fresh random HMAC key (for this run only) and its allow-list."""
    return {
        name: ProducerConfig(name=name, key=SecretStr(secrets.token_hex(32)), commands=commands, backends=backends)
        for name, (commands, backends) in DEMO_SCOPES.items()
    }


@dataclass(frozen=True)
class DemoCommand:
    producer_kind: str
    body: dict[str, Any] | bytes
    #: Sent only after this command id has its terminal event (a webhook retried after the first try).
    after: str | None = None


def demo_commands(keys: Mapping[str, bytes], sealer: Sealer, *, now: datetime | None = None) -> list[DemoCommand]:
    """The demo's commands, each signed with its producer's key and issued ``now``.

    Besides the ones that run: one broken entry (rejected by the input rules), one with a forged
    signature and one outside its producer's allow-list (both rejected by the auth gate).
    """
    at = (now or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def cmd(id: str, command: str, backend: str, args: dict[str, Any], producer: str, **extra: Any) -> dict[str, Any]:
        body = {"id": id, "command": command, "backend": backend, "args": args, "producer": producer,
                "issued_at": at, **extra}
        return dict(body, signature=sign(body, keys[producer]))

    order = {"email": "orders@shop.example", "password": "Demo-order-pass-1", "quota": 500}
    # The migration tool seals its passwords itself (same key and format as the worker's).
    alice = {"email": "alice@host.example", "password": sealer.seal("Demo-alice-pass-1", "password"), "quota": 1024}
    paid = cmd("demo-billing-1", "unsuspend_outgoing", "whm1", {"user": "paidup"}, "billing")
    forged = {"id": "demo-forged-1", "command": "suspend_outgoing", "backend": "whm1", "args": {"user": "paidup"},
              "producer": "billing", "issued_at": at}
    forged["signature"] = sign(forged, b"a key guessed by someone who is not billing")
    return [
        DemoCommand("abuse detection", cmd("demo-abuse-1", "suspend_outgoing", "whm1", {"user": "spammer"},
                                           "abuse-detector")),
        DemoCommand("abuse detection", cmd("demo-abuse-2", "suspend_outgoing", "cp1", {"email": "info@shop.example"},
                                           "abuse-detector")),
        DemoCommand("billing webhook", paid),
        DemoCommand("billing webhook", cmd("demo-billing-2", "addmail", "cp1", order, "billing")),
        DemoCommand("billing webhook", cmd("demo-billing-3", "suspend_outgoing", "whm1", {"user": "ghost"}, "billing")),
        DemoCommand("bulk migration", cmd("demo-migration-1", "addmail", "brainy1", alice, "migration", priority="bulk")),
        DemoCommand("bulk migration", cmd("demo-migration-2", "addforward", "brainy1",
                                          {"email": "alice@host.example", "destination": "alice@shop.example"},
                                          "migration", priority="bulk")),
        # The same webhook delivered again: the same signed bytes, answered from the first run.
        DemoCommand("billing webhook (retried)", paid, after="demo-billing-1"),
        DemoCommand("broken producer", b'{"command": "suspend_outgoing", "backend": "whm1", "args": {"user": "a&user=root"}, '
                                        b'"producer": "billing"}'),
        DemoCommand("forged signature", forged),
        DemoCommand("abuse detection (out of scope)", cmd("demo-abuse-3", "delmail", "cp1",
                                                          {"email": "info@shop.example"}, "abuse-detector")),
    ]


@contextlib.contextmanager
def demo_environment(settings: Settings) -> Iterator[tuple[Settings, dict[str, SandboxServer]]]:
    """Sandboxes of the three kinds with demo accounts, and settings that point the worker at them."""
    whm_app = WhmSandbox(token=DEMO_WHM_TOKEN)
    for user in ("spammer", "paidup"):
        whm_app.add_account(user)
    whm_app.state.accounts["paidup"].outgoing = "suspended"
    cpanel_app = CpanelSandbox()
    cpanel_app.add_account("shop", "shop.example", token=DEMO_CPANEL_TOKEN)
    cpanel_app.state.add_mailbox("info@shop.example")
    brainy_app = BrainycpSandbox(password=DEMO_BRAINYCP_PASSWORD)
    brainy_app.add_account("host", "host.example")
    with SandboxServer(whm_app) as whm, SandboxServer(cpanel_app) as cpanel, SandboxServer(brainy_app) as brainy:
        backends = {
            "whm1": BackendConfig(name="whm1", kind="whm", url=whm.url, token=SecretStr(DEMO_WHM_TOKEN)),
            "cp1": BackendConfig(name="cp1", kind="cpanel", url=cpanel.url, username="shop",
                                 token=SecretStr(DEMO_CPANEL_TOKEN)),
            "brainy1": BackendConfig(name="brainy1", kind="brainycp", url=brainy.url, username=brainy_app.username,
                                     token=SecretStr(DEMO_BRAINYCP_PASSWORD)),
        }
        # Every command must be signed by a configured producer; the demo's have keys for this run only.
        # Mailbox passwords are sealed at ingest; the demo worker gets a throwaway key (64 bytes, base64).
        update: dict[str, Any] = {"backends": backends, "producers": demo_producers(), "require_signatures": True}
        if settings.sealing_key is None:
            update["sealing_key"] = SecretStr(base64.b64encode(os.urandom(64)).decode())
        yield settings.model_copy(update=update), {"whm1": whm, "cp1": cpanel, "brainy1": brainy}


def run_demo(settings: Settings, echo: Callable[[Event, str], None], *, timeout_s: float = 60.0) -> bool:
    """Run the demo; True when every command got its terminal event in time."""
    with demo_environment(settings) as (demo_settings, _servers):
        client = redis.Redis.from_url(demo_settings.redis_url or "")
        runtime = Runtime(demo_settings, threads=4).start()
        try:
            entries: dict[str, str] = {}

            def send(item: DemoCommand) -> None:
                body = item.body if isinstance(item.body, bytes) else orjson.dumps(item.body)
                entry_id: Any = client.xadd(demo_settings.commands_stream, {"body": body})
                entries[entry_id.decode()] = item.producer_kind

            keys = {name: p.key.get_secret_value().encode() for name, p in demo_settings.producers.items()}
            sealer = sealer_for(demo_settings)
            if sealer is None:  # demo_environment always sets one; defensive
                raise ConfigError("the demo needs a sealing key")
            commands = demo_commands(keys, sealer)
            for item in commands:
                if item.after is None:
                    send(item)
            # A retried webhook is sent after the first copy has finished, as a real retry would be.
            later = [item for item in commands if item.after is not None]
            return _follow(client, demo_settings.events_stream, entries, echo, timeout_s, later=later, send=send)
        finally:
            runtime.stop(drain_timeout_ms=5000)
            client.close()


def _follow(client: redis.Redis, stream: str, entries: dict[str, str], echo: Callable[[Event, str], None],
            timeout_s: float, *, later: list[DemoCommand], send: Callable[[DemoCommand], None]) -> bool:
    """Print events until each stream entry has been answered with a terminal event.

    Each command in ``later`` is sent once the command id it waits for has its terminal event.
    """
    answered: set[str] = set()
    finished_ids: set[str] = set()
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
                    finished_ids.add(event.id or "")
        for item in [item for item in later if item.after in finished_ids]:
            later.remove(item)
            send(item)
        if not later and answered >= set(entries):
            return True
    return False
