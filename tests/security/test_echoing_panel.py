"""A panel that echoes its request (the mailbox password too) in its successful answers: the
plaintext reaches no event, record, log, nor Redis's RDB snapshot or rewritten append-only file."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
import pytest
import redis

from tests.conftest import wait_for_terminal
from tests.security.conftest import signed
from tests.security.test_secrets import dump_redis
from workers import scrubbing
from workers.sandbox import Faults, SandboxServer
from workers.sandbox.state import fingerprint
from workers.store.embedded_redis import EmbeddedRedis

PLAINTEXTS = [f"Echoed-Secret-{i}-q9Z!" for i in range(3)]


def command(id: str, name: str, email: str, password: str) -> dict[str, Any]:
    return signed({"id": id, "command": name, "backend": "whm1", "producer": "migration",
                   "args": {"email": email, "password": password}})


def persisted(server: EmbeddedRedis, client: redis.Redis) -> bytes:
    """Every file Redis persists to, once an RDB snapshot and an AOF rewrite have run and the
    files the rewrite replaced are gone (strings stored uncompressed, so a grep is meaningful)."""
    client.config_set("rdbcompression", "no")
    client.save()
    client.bgrewriteaof()
    deadline = time.monotonic() + 30
    while True:
        info = client.info("persistence")
        manifest = b"".join(p.read_bytes() for p in server.directory.rglob("*.manifest"))
        if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"] and b"type h" not in manifest \
                and info.get("aof_last_bgrewrite_status") == "ok":
            break
        assert time.monotonic() < deadline, "the AOF rewrite did not finish"
        time.sleep(0.05)
    time.sleep(0.2)  # (the replaced files are deleted in the background once out of the manifest)
    files = [p for p in server.directory.rglob("*") if p.is_file() and p.suffix != ".log"]
    assert any(".aof" in p.name for p in files) and any(p.suffix == ".rdb" for p in files)
    return b"".join(p.read_bytes() for p in files)


def test_an_echoing_panel_leaves_the_plaintext_in_no_event_record_log_rdb_or_rewritten_aof(
    whm: SandboxServer, secure_settings, runtime_for, caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a panel that echoes every request into its success answers, and a Redis with an AOF
    whm.set_faults(Faults(echo_rate=1.0))
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(scrubbing.SecretFilter())  # (as `mailops worker` installs it)
    with EmbeddedRedis(appendonly=True) as server:
        client = redis.Redis.from_url(server.url)
        settings = secure_settings({"whm1": ("whm", whm)}).model_copy(update={"redis_url": server.url})
        runtime_for(settings)
        # When producers send plain passwords for new mailboxes and a password change
        bodies = [command("e-add-1", "addmail", "echo1@example.example", PLAINTEXTS[0]),
                  command("e-add-2", "addmail", "echo2@example.example", PLAINTEXTS[1]),
                  command("e-pw-1", "passwd", "echo1@example.example", PLAINTEXTS[2])]
        for body in bodies[:2]:
            client.xadd("mailops:commands", {"body": orjson.dumps(body)})
        wait_for_terminal(client, {"e-add-1", "e-add-2"})
        client.xadd("mailops:commands", {"body": orjson.dumps(bodies[2])})
        events = wait_for_terminal(client, {"e-add-1", "e-add-2", "e-pw-1"})
        blob = dump_redis(client)
        files = persisted(server, client)
        client.close()
    # Then all succeeded and the panel got the real passwords (and echoed them)
    assert {e.id: e.status for e in events if e.terminal} == {"e-add-1": "succeeded", "e-add-2": "succeeded",
                                                              "e-pw-1": "succeeded"}
    assert whm.app.state.mailboxes["echo1@example.example"].password == fingerprint(PLAINTEXTS[2])
    # And no plaintext is in any event, record or other Redis value, log line, or persistence file
    for plaintext in PLAINTEXTS:
        assert plaintext.encode() not in blob
        assert plaintext not in "".join(e.to_json().decode() for e in events)
        assert plaintext not in caplog.text
        assert plaintext.encode() not in files
