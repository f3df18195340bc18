"""``mailops worker`` as a process: it starts, runs commands, and exits 0 on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import redis

from tests.cli.conftest import cli_env
from tests.conftest import add_command, wait_for_terminal
from workers.cli.exit_codes import RET_OK
from workers.sandbox import SandboxServer
from workers.store.embedded_redis import EmbeddedRedis

MAILOPS = str(Path(sys.executable).with_name("mailops"))


def test_worker_process_runs_a_command_and_exits_zero_on_sigterm(tmp_path: Path, redis_server: EmbeddedRedis,
                                                                 redis_client: redis.Redis, whm: SandboxServer) -> None:
    # Given `mailops worker` started as an operator starts it
    env = os.environ | cli_env(tmp_path, redis_server.url, {"whm1": whm})
    worker = subprocess.Popen([MAILOPS, "worker", "--threads", "2", "--drain-timeout", "5", "--switch-interval", "3"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # When a producer adds a command
        add_command(redis_client, {"id": "w-1", "command": "suspend_outgoing", "backend": "whm1",
                                   "args": {"user": "example"}, "producer": "abuse"})
        # Then the worker runs it on the panel
        events = wait_for_terminal(redis_client, {"w-1"}, timeout=60)
        assert [(e.id, e.status) for e in events if e.terminal] == [("w-1", "succeeded")]
        assert [c.target for c in whm.app.ledger.changes()] == ["example"]
        # When it gets SIGTERM, Then it drains and exits 0
        worker.send_signal(signal.SIGTERM)
        _out, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)
    assert worker.returncode == RET_OK, err.decode()
    assert b"2 threads on urgent, default, bulk" in err and b"draining (up to 5s)" in err
    # and its interpreter took the GIL switch interval it was given (read back from sys)
    assert b"(GIL switch interval 3 ms)" in err
