"""The private Redis of a process tree (workers/store/embedded_redis.py) stops with everything it started."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.processes import children, running
from workers.store.embedded_redis import REDIS_SERVER_ENV, EmbeddedRedis, redis_server_binary


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_a_server_run_through_a_forking_wrapper_is_stopped_with_its_wrapper(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    # Given redis-server run through a wrapper that forks it (as faketime does in the clock pass)
    wrapper = tmp_path / "redis-server-wrapped"
    wrapper.write_text(f'#!/bin/sh\n"{redis_server_binary()}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv(REDIS_SERVER_ENV, str(wrapper))
    server = EmbeddedRedis().start()
    assert server._proc is not None
    forked = children(server._proc.pid)
    assert forked, "the wrapper forked no server"
    # When it is stopped, or killed
    getattr(server, how)()
    # Then the forked server is gone too, and its port is closed
    assert [pid for pid in forked if running(pid)] == []
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=1):
        pass
    server.stop()  # removes its data directory (after kill, only that is left)
