"""Ingest: entries taken by a consumer that died are reclaimed, so nothing is lost before Dramatiq."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import redis

from tests.conftest import add_command, wait_for_terminal
from tests.test_end_to_end import suspend
from workers.sandbox import SandboxServer

READ_AND_HANG = textwrap.dedent(
    """
    import sys, time
    from workers.command_store import CommandStore
    from workers.ingest import Ingestor
    from workers.redis_client import connect
    from workers.settings import Settings
    settings = Settings(redis_url=sys.argv[1])
    client = connect(settings)
    ingestor = Ingestor(client, settings, CommandStore(client, settings), consumer="doomed")
    ingestor.ensure_group()
    entries = ingestor.read_batch(block_ms=2000)
    print(len(entries), flush=True)
    time.sleep(60)  # killed here: read, never admitted
    """
)


def test_entries_read_by_a_killed_ingest_consumer_are_reclaimed_and_run(
    redis_client: redis.Redis, redis_server, whm: SandboxServer, settings_for, runtime_for
) -> None:
    # Given commands in the stream
    ids = {f"k-{i}" for i in range(5)}
    for i in sorted(ids):
        add_command(redis_client, suspend(i, user="example" if i != "k-3" else "other"))
    # And an ingest consumer process that read them all and was killed before enqueueing
    proc = subprocess.Popen([sys.executable, "-c", READ_AND_HANG, redis_server.url], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "5"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    pending = redis_client.xpending("mailops:commands", "mailops-ingest")
    assert pending["pending"] == 5
    # When a worker starts with a short reclaim idle time
    runtime_for(settings_for({"whm1": ("whm", whm)}, ingest_claim_idle_ms=300))
    # Then every command is reclaimed and ends exactly once (commands for the same account issued
    # at the same time are ordered; the ones found older than the applied one end superseded)
    events = wait_for_terminal(redis_client, ids, timeout=20)
    terminal = [e for e in events if e.terminal]
    assert sorted(e.id for e in terminal if e.id) == sorted(ids)
    assert {e.status for e in terminal} <= {"succeeded", "superseded"}
    assert {e.id for e in terminal if e.status == "succeeded"} >= {"k-3"}
    assert {(c.target, c.new) for c in whm.app.ledger.changes()} == {("example", "suspended"), ("other", "suspended")}
    assert redis_client.xpending("mailops:commands", "mailops-ingest")["pending"] == 0
