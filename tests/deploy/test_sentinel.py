"""Redis high availability: a worker configured through Sentinel rides out a failover and loses nothing.

The test starts a real master, a replica and a Sentinel on loopback. The failover is the graceful
kind an operator runs for maintenance: the master is write-paused (CLIENT PAUSE WRITE), the
replica catches up to the master's replication offset, Sentinel promotes it (SENTINEL FAILOVER),
the old master is made a replica of the new one, and only then is the pause lifted. This is what
Redis's own FAILOVER command does. Replication is asynchronous, so an ungraceful failover (the
master killed) can lose the writes of its last moments; that is not what this test claims.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.clock import ISSUED
from tests.conftest import add_command, read_events, write_config
from workers.errors import ConfigError
from workers.runtime import Runtime
from workers.sandbox import SandboxServer
from workers.settings import Settings
from workers.store.embedded_redis import EmbeddedRedis, free_port, redis_server_binary
from workers.store.redis_client import connect, parse_sentinel_url

MASTER_NAME = "mailops-test"


class SentinelSetup:
    """A master, one replica and one Sentinel, all on 127.0.0.1."""

    def __init__(self) -> None:
        self.master = EmbeddedRedis()
        self.replica = EmbeddedRedis(extra_args=("--replicaof", "127.0.0.1", str(self.master.port)))
        self.sentinel_port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="mailops-sentinel-"))
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SentinelSetup:
        self.master.start()
        self.replica.start()
        conf = self._dir / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self._dir}\n"
            f"logfile {self._dir / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} 2000\n"
            f"sentinel failover-timeout {MASTER_NAME} 10000\n"
        )
        self._proc = subprocess.Popen(
            [redis_server_binary(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
        self.wait_until(lambda: self._replica_known(), "Sentinel to discover the replica")
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        self.replica.stop()
        self.master.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def sentinel_client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.sentinel_port, socket_timeout=2, decode_responses=True)

    def master_port(self) -> int:
        with self.sentinel_client() as client:
            _host, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
            return int(port)

    def _replica_known(self) -> bool:
        with self.sentinel_client() as client:
            replicas = client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
        return any(_pairs(r).get("master-link-status") == "ok" for r in replicas)

    @staticmethod
    def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def graceful_failover(self) -> None:
        """Write-pause the master, let the replica catch up, promote it, demote the old master, unpause."""
        old = redis.Redis(host="127.0.0.1", port=self.master.port, decode_responses=True)
        new = redis.Redis(host="127.0.0.1", port=self.replica.port, decode_responses=True)
        try:
            old.client_pause(60_000, all=False)  # CLIENT PAUSE 60000 WRITE
            offset = old.info("replication")["master_repl_offset"]
            self.wait_until(lambda: new.info("replication").get("slave_repl_offset", -1) >= offset,
                            "the replica to catch up")
            with self.sentinel_client() as sentinel:
                sentinel.sentinel_failover(MASTER_NAME)
            self.wait_until(lambda: self.master_port() == self.replica.port, "Sentinel to promote the replica")
            # The old master is still a master that stale connections could write to. Sentinel
            # demotes it only some seconds later (and not while it is write-paused), so the
            # demotion Sentinel would send is sent here, before the pause is lifted: the paused
            # writes then fail with READONLY, and the client retries them on the new master.
            old.replicaof("127.0.0.1", self.replica.port)
            assert old.info("replication")["role"] == "slave"
        finally:
            old.client_unpause()
            old.close()
            new.close()


def _pairs(flat: object) -> dict[str, str]:
    if isinstance(flat, dict):
        return {str(k): str(v) for k, v in flat.items()}
    assert isinstance(flat, list)
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)}


@pytest.fixture
def sentinel_setup() -> Iterator[SentinelSetup]:
    setup = SentinelSetup().start()
    try:
        yield setup
    finally:
        setup.stop()


def suspend(id: str) -> dict[str, object]:
    return {
        "id": id, "command": "suspend_outgoing", "backend": "whm1", "args": {"user": "example"},
        "producer": "abuse-detector", "issued_at": ISSUED,
    }


def test_a_worker_configured_through_sentinel_loses_no_accepted_command_across_a_failover(
    sentinel_setup: SentinelSetup, whm: SandboxServer, tmp_path: Path
) -> None:
    # Given a worker that finds Redis through Sentinel (MAILOPS_REDIS_SENTINELS + master name)
    config = write_config(tmp_path / "mailops.toml", {
        "whm1": {"kind": "whm", "url": whm.url, "token_env": "TOKEN_WHM1", "read_timeout": 5.0},
    })
    settings = Settings.from_env({
        "MAILOPS_REDIS_SENTINELS": f"127.0.0.1:{sentinel_setup.sentinel_port}",
        "MAILOPS_REDIS_SENTINEL_MASTER": MASTER_NAME,
        "MAILOPS_CONFIG": str(config),
        "TOKEN_WHM1": str(getattr(whm.app, "token", "")),
    })
    assert settings.redis_url is not None and settings.redis_url.startswith("redis+sentinel://")
    runtime = Runtime(settings, threads=4).start()
    producer = connect(settings, max_connections=4)
    accepted: list[str] = []
    stop = threading.Event()

    def produce() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            add_command(producer, suspend(f"ha-{n}"))  # returns only once Redis acknowledged the XADD
            accepted.append(f"ha-{n}")
            time.sleep(0.02)

    thread = threading.Thread(target=produce, daemon=True)
    try:
        # When commands keep arriving while the master fails over to the replica
        thread.start()
        SentinelSetup.wait_until(lambda: len(accepted) >= 20, "commands before the failover")
        before = sentinel_setup.master_port()
        sentinel_setup.graceful_failover()
        after = len(accepted)
        SentinelSetup.wait_until(lambda: len(accepted) >= after + 20, "commands after the failover")
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the producer is stuck"

        # Then Redis is the former replica, and every accepted command has exactly one terminal event
        assert before == sentinel_setup.master.port
        assert sentinel_setup.master_port() == sentinel_setup.replica.port
        deadline = time.monotonic() + 40
        while True:
            terminal = [e.id for e in read_events(producer) if e.terminal and e.id]
            if set(accepted) <= set(terminal) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        missing = sorted(set(accepted) - set(terminal))
        assert missing == [], f"{len(missing)} of {len(accepted)} accepted commands have no terminal event"
        assert sorted(terminal) == sorted(set(terminal)), "a command ended twice"
        assert set(terminal) == set(accepted)
    finally:
        stop.set()
        thread.join(timeout=10)
        runtime.stop(drain_timeout_ms=2000)
        producer.close()


def test_the_sentinel_url_names_the_sentinels_the_master_the_database_and_the_password() -> None:
    address = parse_sentinel_url("redis+sentinel://:s%40cret@10.0.0.1:26379,[::1]:26380/mymaster/2")
    assert address.sentinels == (("10.0.0.1", 26379), ("::1", 26380))
    assert (address.master, address.db, address.username, address.password) == ("mymaster", 2, None, "s@cret")


@pytest.mark.parametrize("url", [
    "redis+sentinel://10.0.0.1:26379",             # no master name
    "redis+sentinel:///mymaster/0",                # no Sentinel
    "redis+sentinel://10.0.0.1/mymaster/0",        # no port
    "redis+sentinel://10.0.0.1:26379/mymaster/x",  # database not a number
])
def test_a_malformed_sentinel_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_sentinel_url(url)


def test_the_sentinel_variables_mean_the_same_as_the_url_and_exclude_a_plain_redis_url() -> None:
    env = {"MAILOPS_REDIS_SENTINELS": "a:26379, b:26379", "MAILOPS_REDIS_SENTINEL_MASTER": "mymaster"}
    assert Settings.from_env(env).redis_url == "redis+sentinel://a:26379,b:26379/mymaster/0"
    with pytest.raises(ConfigError):
        Settings.from_env({**env, "MAILOPS_REDIS_URL": "redis://a:6379/0"})
    with pytest.raises(ConfigError):
        Settings.from_env({"MAILOPS_REDIS_SENTINELS": "a:26379"})
