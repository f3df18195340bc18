"""Time every console page with 100,000 command records and 10,000 dead letters in Redis.

    .venv/bin/python scripts/console_bench.py [--requests 30] [--commands 100000] [--dead 10000]

Fills a private redis-server with records in the exact layout admit.lua, finish.lua and the
ordering commit write (record hashes, histories, the dead-letter index, the console's indexes,
holds, 100,000 events), serves the console under uvicorn on loopback, logs in, and requests each
page N times over one keep-alive connection. Prints the median, p95 and max per page in milliseconds
(a benchmark, not a test: the figures are in docs/performance.md, "Console").
"""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time

import httpx
import orjson
import redis
import uvicorn
from pydantic import SecretStr

from workers.cli.bulk import command_id_for, encode_ranges
from workers.console.app import create_app
from workers.console.auth import hash_password
from workers.settings import BackendConfig, ConsoleConfig, ConsoleUser, OperatorConfig, Settings
from workers.store.embedded_redis import EmbeddedRedis

BACKENDS = [f"whm{i}" for i in range(1, 9)]
PRODUCERS = ["abuse-detector", "billing", "migration"]
PASSWORD = "bench-password"


def fill(client: redis.Redis, settings: Settings, commands: int, dead: int) -> None:
    keys = settings.keys
    now = int(time.time() * 1000)
    rng = random.Random(7)
    pipe = client.pipeline(transaction=False)
    for n in range(commands):
        backend, producer = BACKENDS[n % len(BACKENDS)], PRODUCERS[n % len(PRODUCERS)]
        target = f"u{n % 20_000}"
        created = now - (commands - n) * 50
        # A third of the commands come from bulk batches of 1,000 lines, with mailops bulk's ids.
        batch = f"batch-{n // 3000:03d}" if producer == "migration" else None
        cid = command_id_for(batch, n % 3000 // 3) if batch else f"cmd-{n:06d}"
        is_dead = n % (commands // dead) == 0 if dead else False
        status = "dead_lettered" if is_dead else rng.choice(["succeeded"] * 8 + ["failed", "held"])
        outcome = {"id": cid, "command": "suspend_outgoing", "backend": backend, "target": target, "status": status,
                   "terminal": True, "producer": producer, "attempt": 2 if is_dead else 1, "batch": batch}
        record: dict[str, object] = {"fp": "f" * 16, "status": status, "created": created, "attempts": outcome["attempt"],
                                     "updated": created + 40}
        if is_dead:
            outcome["error"] = {"kind": rng.choice(["panel_unavailable", "timeout", "internal"]), "message": "HTTP 500"}
            record["command"] = orjson.dumps({"id": cid, "command": "suspend_outgoing", "backend": backend,
                                              "args": {"user": target}, "producer": producer,
                                              "issued_at": "2026-01-01T00:00:00Z"})
            pipe.zadd(keys.dead_letters, {cid: created + 40})
            for attempt in (1, 2):
                pipe.rpush(keys.command_history(cid), orjson.dumps(
                    {"attempt": attempt, "start": created + attempt * 10, "end": created + attempt * 10 + 5,
                     "worker": "bench", "result": "retrying" if attempt == 1 else "dead_lettered",
                     "error": outcome["error"]}))
        record["outcome"] = orjson.dumps(outcome)
        pipe.hset(keys.command(cid), mapping=record)  # type: ignore[arg-type]
        pipe.zadd(keys.command_index, {cid: created})
        pipe.zadd(keys.command_index_by("target", target), {cid: created})
        pipe.zadd(keys.command_index_by("backend", backend), {cid: created})
        pipe.zadd(keys.command_index_by("producer", producer), {cid: created})
        if batch:
            pipe.zadd(keys.command_index_by("batch", batch), {cid: created})
            pipe.zadd(keys.batch_index, {batch: created}, nx=True)
        if n % 100 < 5:  # 5,000 held targets
            hold_key = keys.holds(backend, target, "outgoing")
            pipe.hset(hold_key, "abuse", orjson.dumps({"reason": "abuse", "producer": producer, "command": cid,
                                                       "since": "2026-01-01T00:00:00+00:00", "args": {"user": target}}))
            pipe.zadd(keys.holds_index, {hold_key: created}, nx=True)
        pipe.xadd(settings.events_stream, {"body": orjson.dumps(outcome)}, id=f"{created}-{n}")
        if n % 5000 == 4999:
            pipe.execute()
    for number in range(commands // 3000 + 1):
        pipe.hset(keys.batch(f"batch-{number:03d}"), mapping={"file": f"migration-{number}.jsonl", "total": 1000,
                                                             "published": 1000, "lines": encode_ranges(list(range(1000))),
                                                             "created": now - commands * 50})
    pipe.execute()


def serve(settings: Settings, client: redis.Redis) -> tuple[uvicorn.Server, str]:
    server = uvicorn.Server(uvicorn.Config(create_app(settings, client, secure_cookies=False), host="127.0.0.1",
                                           port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


PAGES = [
    ("overview", "/"),
    ("overview, live region", "/live/overview"),
    ("commands: newest", "/commands"),
    ("commands: page 100", "/commands?offset=5000"),
    ("commands: by target", "/commands?by=target&q=u123"),
    ("commands: by backend, status failed", "/commands?by=backend&q=whm3&status=failed"),
    ("commands: by batch", "/commands?by=batch&q=batch-020"),
    ("commands: time range", "/commands?since=2020-01-01T00:00&until=2100-01-01T00:00"),
    ("command page (dead letter)", "/commands/cmd-000010"),
    ("dead letters: newest", "/dead-letters"),
    ("dead letters: page 100", "/dead-letters?offset=5000"),
    ("dead letters: by backend", "/dead-letters?backend=whm2"),
    ("dead letters: by error kind", "/dead-letters?kind=timeout"),
    ("dead letters: older than 1 h", "/dead-letters?older_than_h=1"),
    ("holds", "/holds"),
    ("holds: by target", "/holds?target=u100"),
    ("batches", "/batches"),
    ("batch page (1,000 commands)", "/batches/batch-020"),
    ("backends", "/backends"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--commands", type=int, default=100_000)
    parser.add_argument("--dead", type=int, default=10_000)
    options = parser.parse_args()
    with EmbeddedRedis() as server:
        backends = {name: BackendConfig(name=name, kind="whm", url=f"https://{name}.example:2087", token=SecretStr("t"))
                    for name in BACKENDS}
        users = {"ops": ConsoleUser(name="ops", role="operator", password_hash=SecretStr(hash_password(PASSWORD)))}
        settings = Settings(redis_url=server.url, backends=backends, console=ConsoleConfig(users=users),
                            operators={"ops": OperatorConfig(name="ops", key=SecretStr("k" * 32), actions=("dlq.replay",))})
        client = redis.Redis.from_url(server.url)
        started = time.monotonic()
        fill(client, settings, options.commands, options.dead)
        print(f"filled in {time.monotonic() - started:.0f} s: {client.zcard(settings.keys.command_index)} command records, "
              f"{client.zcard(settings.keys.dead_letters)} dead letters, {client.zcard(settings.keys.holds_index)} holds, "
              f"{client.xlen(settings.events_stream)} events, {client.dbsize()} keys")
        uvicorn_server, base = serve(settings, client)
        with httpx.Client(base_url=base, follow_redirects=True, timeout=30) as http:
            http.post("/login", data={"user": "ops", "password": PASSWORD})
            print("\n| page | median ms | p95 ms | max ms |\n|---|---:|---:|---:|")
            for name, path in PAGES:
                times = []
                http.get(path)  # warm-up, not counted
                for _ in range(options.requests):
                    start = time.perf_counter()
                    response = http.get(path)
                    times.append((time.perf_counter() - start) * 1000)
                    assert response.status_code == 200, (path, response.status_code)
                times.sort()
                p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
                print(f"| {name} (`{path}`) | {statistics.median(times):.0f} | {p95:.0f} | {times[-1]:.0f} |")
        uvicorn_server.should_exit = True


if __name__ == "__main__":
    main()
