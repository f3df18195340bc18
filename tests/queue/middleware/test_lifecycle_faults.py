"""Lifecycle under faults: whatever fails before, during or after the panel call, and whichever
script Redis refuses, every command ends with exactly one terminal event, and no message is
acknowledged before its command's terminal step (or its retry) is written."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
import redis
from dramatiq import Message
from redis.commands.core import Script

from tests.clock import ISSUED
from tests.conftest import add_command, read_events, retry_for, wait_for_terminal
from workers.attempt.executor import Executor
from workers.attempt.retry_policy import RetryPolicy
from workers.queue.broker import WakingConsumer
from workers.queue.messages import COMMAND_OPTION, actor_name_for
from workers.queue.middleware.lifecycle import Lifecycle
from workers.sandbox import SandboxServer
from workers.settings import Settings
from workers.store import lua
from workers.store.command_store import CommandStore
from workers.store.dead_letters import DeadLetters

#: Record statuses a message may be acknowledged in: the command ended, or its next run is queued.
SETTLED = {"succeeded", "failed", "dead_lettered", "superseded", "retrying", "waiting", "stale"}


def suspend(id: str, user: str = "example") -> dict[str, object]:
    return {"id": id, "command": "suspend_outgoing", "backend": "whm1", "args": {"user": user},
            "producer": "billing", "issued_at": ISSUED}


@pytest.fixture
def acks_seen(monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis) -> list[tuple[str, str]]:
    """Every acknowledgement a worker makes through Dramatiq, with its command's record status at
    that moment ("stale" for a copy a newer generation of the command replaced)."""
    seen: list[tuple[str, str]] = []
    original = WakingConsumer.ack

    def ack(self: WakingConsumer, message: Any) -> None:
        command_id = str(message.args[0])
        status, gen = redis_client.hmget(f"mailops:cmd:{command_id}", "status", "gen")
        stale = int(message.options.get("mailops_gen", 1)) < int(gen or 1)
        if not message.queue_name.endswith(".DQ"):  # (a delayed copy is acknowledged once moved to its queue)
            seen.append((command_id, "stale" if stale else (status or b"?").decode()))
        original(self, message)

    monkeypatch.setattr(WakingConsumer, "ack", ack)
    return seen


def once_for(ids: set[str]) -> Any:
    """A predicate true the first time it is asked about each id in ``ids``."""
    left, lock = set(ids), threading.Lock()

    def first(command_id: str) -> bool:
        with lock:
            if command_id in left:
                left.discard(command_id)
                return True
            return False

    return first


def nothing_left_queued(client: redis.Redis, settings: Settings) -> None:
    """No message of any queue is left unacknowledged, queued or dead-lettered by Dramatiq."""
    namespace = settings.keys.dramatiq.namespace
    leftovers = {key.decode(): client.type(key).decode() for key in client.scan_iter(f"{namespace}:*")
                 if not key.decode().endswith((".bell", "__heartbeats__")) and "__wake__" not in key.decode()}
    assert {k: t for k, t in leftovers.items() if client.hlen(k) if t == "hash"} == {}
    assert {k for k, t in leftovers.items() if t in ("set", "list", "zset") and
            (client.scard(k) if t == "set" else client.llen(k) if t == "list" else client.zcard(k))} == set()


def one_terminal_each(client: redis.Redis, ids: set[str]) -> dict[str, Any]:
    events = [e for e in read_events(client) if e.terminal]
    counts = Counter(e.id for e in events)
    assert {i: counts[i] for i in ids} == {i: 1 for i in ids}
    return {e.id: e for e in events}


def test_a_fault_before_during_and_after_the_call_ends_each_command_with_exactly_one_terminal_event(
    redis_client: redis.Redis, whm: SandboxServer, settings_for, runtime_for, monkeypatch: pytest.MonkeyPatch,
    acks_seen: list[tuple[str, str]],
) -> None:
    # Given a worker whose lifecycle fails once before one command's call, whose panel call
    # raises an unexpected error once for another, and whose after-step fails once for a third
    retry_for(monkeypatch, "suspend_outgoing",
                        RetryPolicy(max_attempts=3, min_backoff_ms=20, max_backoff_ms=50))
    before, during, after = once_for({"f-before"}), once_for({"f-during"}), once_for({"f-after"})
    begin, execute, conclude = Lifecycle._begin, Executor._execute, Lifecycle._conclude

    def failing_begin(self: Lifecycle, message: Any, begun: Any) -> None:
        begin(self, message, begun)
        if before(str(message.args[0])):
            raise RuntimeError("injected: a bug before the call")

    def failing_execute(self: Executor, backend: Any, command: Any) -> Any:
        if during(command.id):
            raise RuntimeError("injected: a bug during the call")
        return execute(self, backend, command)

    def failing_conclude(self: Lifecycle, broker: Any, message: Any, execution: Any, exception: Any) -> None:
        if after(execution.command.id):
            raise KeyError("injected: a bug after the call")
        conclude(self, broker, message, execution, exception)

    monkeypatch.setattr(Lifecycle, "_begin", failing_begin)
    monkeypatch.setattr(Executor, "_execute", failing_execute)
    monkeypatch.setattr(Lifecycle, "_conclude", failing_conclude)
    settings = settings_for({"whm1": ("whm", whm)})
    runtime_for(settings)
    ids = {"f-before", "f-during", "f-after", "f-plain"}
    # When the four commands run
    for command_id in sorted(ids):
        add_command(redis_client, suspend(command_id, user="other" if command_id == "f-plain" else "example"))
    wait_for_terminal(redis_client, ids, timeout=30)
    # Then each has exactly one terminal event: the lifecycle faults dead-letter as `internal`
    # (listed by `mailops dlq`), the call's fault is retried and succeeds
    ended = one_terminal_each(redis_client, ids)
    assert {i: e.status for i, e in ended.items() if i in ids} == {
        "f-before": "dead_lettered", "f-during": "succeeded", "f-after": "dead_lettered", "f-plain": "succeeded"}
    for command_id in ("f-before", "f-after"):
        error = ended[command_id].error
        assert error is not None and error.kind == "internal"
        assert "injected" not in error.message  # an unexpected error's text may carry request data
    assert {d.id for d in DeadLetters(redis_client, CommandStore(redis_client, settings)).list()} == {"f-before", "f-after"}
    retried = [e for e in read_events(redis_client) if e.id == "f-during" and e.status == "retrying"]
    assert len(retried) == 1 and retried[0].error is not None and retried[0].error.kind == "internal"
    # And no message was acknowledged before its command was settled, and none is left behind
    assert all(status in SETTLED for _id, status in acks_seen), acks_seen
    nothing_left_queued(redis_client, settings)


def test_redis_refusing_each_script_once_leaves_every_command_exactly_one_terminal_event(
    redis_client: redis.Redis, whm: SandboxServer, settings_for, runtime_for, monkeypatch: pytest.MonkeyPatch,
    acks_seen: list[tuple[str, str]],
) -> None:
    # Given a Redis that refuses the first call of each script this worker sends (as it does
    # under `maxmemory` with `noeviction`: an OOM error reply, nothing run), whichever way it is sent
    retry_for(monkeypatch, "suspend_outgoing",
                        RetryPolicy(max_attempts=3, min_backoff_ms=20, max_backoff_ms=50))
    refused: Counter[str] = Counter()
    lock = threading.Lock()

    def refuse_first(sha: str) -> bool:
        with lock:
            refused[sha] += 1
            return refused[sha] == 1

    def oom() -> redis.exceptions.OutOfMemoryError:
        return redis.exceptions.OutOfMemoryError("command not allowed when used memory > 'maxmemory'.")

    exchange, script_call = lua.exchange, Script.__call__

    def refusing_exchange(client: redis.Redis, commands: Any) -> list[Any]:
        commands = list(commands)
        refuse = [c[0] == "EVALSHA" and refuse_first(str(c[1])) for c in commands]
        sent = iter(exchange(client, [c for c, r in zip(commands, refuse, strict=True) if not r]))
        return [oom() if r else next(sent) for r in refuse]

    def refusing_call(self: Script, keys: Any = None, args: Any = None, client: Any = None) -> Any:
        if refuse_first(self.sha):
            raise oom()
        return script_call(self, keys=keys, args=args, client=client)

    monkeypatch.setattr(lua, "exchange", refusing_exchange)
    monkeypatch.setattr(Script, "__call__", refusing_call)
    # ... and one command whose first call fails, so the retry script runs too
    during, execute = once_for({"r-3"}), Executor._execute

    def failing_execute(self: Executor, backend: Any, command: Any) -> Any:
        if during(command.id):
            raise RuntimeError("injected: a bug during the call")
        return execute(self, backend, command)

    monkeypatch.setattr(Executor, "_execute", failing_execute)
    settings = settings_for({"whm1": ("whm", whm)})
    runtime_for(settings)
    ids = {f"r-{i}" for i in range(6)}
    # When commands run
    for i in range(6):
        add_command(redis_client, suspend(f"r-{i}", user=("example", "other")[i % 2]))
    wait_for_terminal(redis_client, ids, timeout=40)
    # Then every script was refused once and waited out, and each command has exactly one
    # terminal event, as if nothing had been refused (same-target commands may supersede each other)
    names = {sha: str(source)[len(lua.prelude()):len(lua.prelude()) + 60] for sha, source in lua._sources.items()}
    assert len(refused) >= 4 and all(n >= 2 for n in refused.values()), {names.get(s, s): n for s, n in refused.items()}
    ended = one_terminal_each(redis_client, ids)
    assert {e.status for i, e in ended.items() if i in ids} <= {"succeeded", "superseded"}
    assert not [e for e in read_events(redis_client) if e.error is not None and e.error.kind == "internal"
                and e.id != "r-3"]
    assert all(status in SETTLED for _id, status in acks_seen), acks_seen
    nothing_left_queued(redis_client, settings)


def test_a_message_whose_command_no_longer_parses_is_dead_lettered_as_internal_and_acknowledged_with_it(
    redis_client: redis.Redis, whm: SandboxServer, settings_for, runtime_for,
) -> None:
    # Given a queued message whose command the worker cannot read back (a schema that moved on)
    settings = settings_for({"whm1": ("whm", whm)})
    redis_client.hset(settings.keys.command("bad-1"), mapping={"fp": "0" * 64, "status": "queued", "gen": 1})
    runtime = runtime_for(settings)
    broken = {"command": "suspend_outgoing", "backend": "whm1", "producer": "billing", "issued_at": ISSUED,
              "args": {"user": "Not A User!"}}
    runtime.broker.enqueue(Message(queue_name="default", actor_name=actor_name_for("default"), args=("bad-1",),
                                   kwargs={}, options={"mailops_gen": 1, COMMAND_OPTION: broken}))
    # When a worker takes it
    wait_for_terminal(redis_client, {"bad-1"})
    # Then it ends once, dead-lettered with kind `internal`, is listed by `mailops dlq`, never
    # reached the panel, and its message is gone with the terminal event
    ended = one_terminal_each(redis_client, {"bad-1"})["bad-1"]
    assert ended.status == "dead_lettered" and ended.error is not None and ended.error.kind == "internal"
    assert (ended.command, ended.backend, ended.producer) == ("suspend_outgoing", "whm1", "billing")
    assert [d.id for d in DeadLetters(redis_client, CommandStore(redis_client, settings)).list()] == ["bad-1"]
    assert whm.stats()["requests"] == 0
    nothing_left_queued(redis_client, settings)
