"""The plain-Dramatiq floor: one Dramatiq actor that makes the same single HTTP call.

``python -m workers.bench.baseline --redis-url URL --namespace NS --events STREAM --sandbox URL
--token T --threads N`` runs one worker process of Dramatiq's own :class:`RedisBroker` (default
middleware) with the same worker settings as :class:`workers.runtime.Runtime`. Its actor POSTs
``suspend_outgoing_email`` to the sandbox on a pooled keep-alive httpx client, decodes the JSON
answer, and XADDs one completion entry to ``STREAM`` (the one Redis write mailops' terminal
event also costs). Nothing else: no record, no idempotency, no attempt counting.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import dramatiq
import httpx
import orjson
import redis
from dramatiq.brokers.redis import RedisBroker

#: Name of the baseline actor (and of its queue).
ACTOR_NAME = "bench_call"
QUEUE_NAME = "bench"


def build_broker(client: redis.Redis, namespace: str) -> RedisBroker:
    broker: RedisBroker = RedisBroker(client=client, namespace=namespace)  # type: ignore[no-untyped-call]
    return broker


def panel_client(sandbox_url: str, token: str, connections: int) -> httpx.Client:
    """A pooled keep-alive client for one sandbox, authenticated like a WHM API token."""
    return httpx.Client(
        base_url=sandbox_url, timeout=httpx.Timeout(5.0), follow_redirects=False, trust_env=False,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        headers={"Authorization": f"whm root:{token}", "Accept": "application/json"},
    )


def panel_call(http: httpx.Client, user: str) -> str:
    """The one call: POST ``suspend_outgoing_email`` and decode the answer; returns the status."""
    response = http.post("/json-api/suspend_outgoing_email", data={"api.version": "1", "user": user})
    answer = orjson.loads(response.content)
    return "succeeded" if answer["metadata"]["result"] == 1 else "failed"


def declare_actor(
    broker: RedisBroker, *, client: redis.Redis, sandbox_url: str, token: str, events: str, threads: int
) -> Callable[..., Any]:
    http = panel_client(sandbox_url, token, threads)

    def bench_call(command_id: str, user: str) -> None:
        status = panel_call(http, user)
        client.xadd(events, {"body": orjson.dumps({"id": command_id, "status": status, "terminal": True})})

    actor: Callable[..., Any] = dramatiq.actor(actor_name=ACTOR_NAME, queue_name=QUEUE_NAME, broker=broker)(bench_call)
    return actor


def enqueue(broker: RedisBroker, items: list[tuple[str, str]]) -> None:
    """Enqueue one baseline message per (command id, user), as a producer would."""
    for command_id, user in items:
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=QUEUE_NAME, actor_name=ACTOR_NAME, args=(command_id, user), kwargs={}, options={},
        )
        broker.enqueue(message)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers.bench.baseline")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--sandbox", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    client = redis.Redis.from_url(args.redis_url, max_connections=args.threads * 2 + 16)
    broker = build_broker(client, args.namespace)
    declare_actor(broker, client=client, sandbox_url=args.sandbox, token=args.token, events=args.events,
                  threads=args.threads)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker = dramatiq.Worker(broker, worker_threads=args.threads, queues={QUEUE_NAME}, worker_timeout=100)
    worker.start()
    print(f"baseline worker: {args.threads} threads on {QUEUE_NAME}", file=sys.stderr, flush=True)
    stop.wait()
    worker.stop(timeout=2000)
    broker.close()


if __name__ == "__main__":  # pragma: no cover
    main()
