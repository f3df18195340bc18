"""What the console's indexes cost: Redis CPU per admit with and without them, and their memory.

    .venv/bin/python scripts/console_index_cost.py [--admits 20000]

Runs ``admit.lua`` through :meth:`CommandStore.admit_ahead` on a private redis-server, batches of
200, reading ``INFO cpu`` before and after; "without" sends the same calls with the index keys
blanked (the script skips them). Two alternating pairs, since a shared machine is noisy. Then the
memory of the indexes per command in console_bench.py's layout. Figures: docs/performance.md, "Console".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import redis
from pydantic import SecretStr

from schemas.commands import validate_command
from workers.queue.messages import message_for
from workers.settings import BackendConfig, Settings
from workers.store.command_store import CommandStore
from workers.store.embedded_redis import EmbeddedRedis

sys.path.insert(0, str(Path(__file__).parent))
import console_bench  # (the bench's exact layout, for the memory figure)

#: admit.lua's keys before the console's indexes (KEYS 8-13 follow).
ADMIT_KEYS = 7


def cpu_s(client: redis.Redis) -> float:
    info: Any = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def admit_cost(client: redis.Redis, settings: Settings, admits: int, *, indexed: bool) -> float:
    client.flushall()
    store = CommandStore(client, settings)
    calls = []
    for i in range(admits):
        command = validate_command({"id": f"c-{i}", "command": "suspend_outgoing", "backend": "whm1",
                                    "args": {"user": f"u{i}"}, "producer": "abuse-detector"})
        keys, args = store.admit_keys_args(command, fingerprint=f"{i:032x}"[::-1], entry=f"{i + 1}-0",
                                           message=message_for(command, entry=f"{i + 1}-0"))
        calls.append((keys if indexed else keys[:ADMIT_KEYS] + [""] * (len(keys) - ADMIT_KEYS), args))
    before = cpu_s(client)
    for start in range(0, admits, 200):
        store.admit_ahead(calls[start:start + 200]).verdicts()
    return (cpu_s(client) - before) / admits * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admits", type=int, default=20_000)
    options = parser.parse_args()
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        backends = {name: BackendConfig(name=name, kind="whm", url=f"https://{name}.example:2087", token=SecretStr("t"))
                    for name in console_bench.BACKENDS}
        settings = Settings(redis_url=server.url, backends=backends)
        for _ in range(2):
            without = admit_cost(client, settings, options.admits, indexed=False)
            with_indexes = admit_cost(client, settings, options.admits, indexed=True)
            print(f"Redis CPU per admit: {without:.0f} us without the indexes, {with_indexes:.0f} us with them "
                  f"(+{with_indexes - without:.0f} us)")
        client.flushall()
        commands = 50_000
        console_bench.fill(client, settings, commands, 0)
        indexes = sum(int(client.memory_usage(key) or 0) for key in client.scan_iter(match="mailops:idx:*", count=1000)
                      if not key.startswith(b"mailops:idx:holds"))
        records = sum(int(client.memory_usage(key) or 0) for key in client.scan_iter(match="mailops:cmd:*", count=1000))
        print(f"memory per command: indexes {indexes / commands:.0f} B, record {records / commands:.0f} B")


if __name__ == "__main__":
    main()
