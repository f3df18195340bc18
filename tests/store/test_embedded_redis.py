"""The private Redis of a process tree (workers/store/embedded_redis.py) stops with everything it started."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from workers.store.embedded_redis import REDIS_SERVER_ENV, EmbeddedRedis, redis_server_binary


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


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
    forked = _children(server._proc.pid)
    assert forked, "the wrapper forked no server"
    # When it is stopped, or killed
    getattr(server, how)()
    # Then the forked server is gone too, and its port is closed
    assert [pid for pid in forked if _running(pid)] == []
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), timeout=1):
        pass
    server.stop()  # removes its data directory (after kill, only that is left)
