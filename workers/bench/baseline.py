"""The plain-Dramatiq floor: one Dramatiq actor that makes the same single HTTP call.

``python -m workers.bench.baseline --redis-url URL --namespace NS --events STREAM --sandbox URL
--token T --threads N [--client httpx|pool]`` runs one worker process of Dramatiq's own
:class:`RedisBroker` (default middleware) with the same worker settings as
:class:`workers.runtime.Runtime`. Its actor POSTs ``suspend_outgoing_email`` to the sandbox on a
pooled keep-alive client, decodes the JSON answer, and XADDs one completion entry to ``STREAM``
(the one Redis write mailops' terminal event also costs). Nothing else: no record, no
idempotency, no attempt counting.

The client is ``httpx`` (what a plain actor would use: the floor the targets are set against) or
``pool``, mailops' own keep-alive pool (:mod:`workers.backends.connections`), which shows how
much of the difference is the HTTP client and how much the rest.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import dramatiq
import httpx
import orjson
import redis
from dramatiq.brokers.redis import RedisBroker

from workers.backends.connections import ConnectionPool
from workers.stop_signal import stop_on_signals, wait_for_stop

#: Name of the baseline actor (and of its queue).
ACTOR_NAME = "bench_call"
QUEUE_NAME = "bench"


def build_broker(client: redis.Redis, namespace: str) -> RedisBroker:
    broker: RedisBroker = RedisBroker(client=client, namespace=namespace)  # type: ignore[no-untyped-call]
    return broker


#: The one call: POST ``suspend_outgoing_email`` for a user, decode the answer, return the status.
PanelCall = Callable[[str], str]
PATH = "/json-api/suspend_outgoing_email"


def _status(answer: Any) -> str:
    return "succeeded" if answer["metadata"]["result"] == 1 else "failed"


def httpx_call(sandbox_url: str, token: str, connections: int) -> PanelCall:
    """The call on a pooled keep-alive ``httpx.Client``, authenticated like a WHM API token."""
    http = httpx.Client(
        base_url=sandbox_url, timeout=httpx.Timeout(5.0), follow_redirects=False, trust_env=False,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        headers={"Authorization": f"whm root:{token}", "Accept": "application/json"},
    )

    def call(user: str) -> str:
        return _status(orjson.loads(http.post(PATH, data={"api.version": "1", "user": user}).content))

    return call


def pool_call(sandbox_url: str, token: str, connections: int) -> PanelCall:
    """The call on mailops' own keep-alive pool (what ``PanelHttp`` sends it through)."""
    pool = ConnectionPool(sandbox_url, size=connections, connect_timeout=5.0, read_timeout=5.0)
    headers = {"Authorization": f"whm root:{token}", "Accept": "application/json",
               "Content-Type": "application/x-www-form-urlencoded"}

    def call(user: str) -> str:
        body = urlencode({"api.version": "1", "user": user}).encode()
        return _status(orjson.loads(pool.request("POST", PATH, headers=headers, body=body).content))

    return call


#: ``--client`` name -> how the call is made.
CLIENTS: dict[str, Callable[[str, str, int], PanelCall]] = {"httpx": httpx_call, "pool": pool_call}


def declare_actor(
    broker: RedisBroker, *, client: redis.Redis, sandbox_url: str, token: str, events: str, threads: int,
    http_client: str = "httpx",
) -> Callable[..., Any]:
    panel_call = CLIENTS[http_client](sandbox_url, token, threads)

    def bench_call(command_id: str, user: str) -> None:
        status = panel_call(user)
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
    parser.add_argument("--client", choices=sorted(CLIENTS), default="httpx")
    args = parser.parse_args(argv)
    client = redis.Redis.from_url(args.redis_url, max_connections=args.threads * 2 + 16)
    broker = build_broker(client, args.namespace)
    declare_actor(broker, client=client, sandbox_url=args.sandbox, token=args.token, events=args.events,
                  threads=args.threads, http_client=args.client)
    stop = stop_on_signals()
    worker = dramatiq.Worker(broker, worker_threads=args.threads, queues={QUEUE_NAME}, worker_timeout=100)
    worker.start()
    print(f"baseline worker: {args.threads} threads on {QUEUE_NAME}, {args.client} client", file=sys.stderr, flush=True)
    wait_for_stop(stop)
    worker.stop(timeout=2000)
    broker.close()


if __name__ == "__main__":  # pragma: no cover
    main()
