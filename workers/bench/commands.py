"""The commands the bench sends: signed as a configured producer signs them, queued in chunks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import redis

from workers.bench.harness import BENCH_PRODUCER, BENCH_PRODUCER_KEY
from workers.ingest.signing import sign


def command_body(command_id: str, user: str, *, backend: str = "whm1", priority: str | None = "default") -> bytes:
    """A signed command, as a configured producer sends it (signatures are one of the guarantees)."""
    body: dict[str, Any] = {"id": command_id, "command": "suspend_outgoing", "backend": backend,
                            "args": {"user": user}, "producer": BENCH_PRODUCER,
                            "issued_at": datetime.now(UTC).isoformat().replace("+00:00", "Z")}
    if priority:
        body["priority"] = priority
    body["signature"] = sign(body, BENCH_PRODUCER_KEY.encode())
    return orjson.dumps(body)


def xadd_many(client: redis.Redis, stream: str, bodies: list[bytes], chunk: int = 500) -> None:
    for start in range(0, len(bodies), chunk):
        pipe = client.pipeline(transaction=False)
        for body in bodies[start:start + chunk]:
            pipe.xadd(stream, {"body": body})
        pipe.execute()
