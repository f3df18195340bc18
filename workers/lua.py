"""The Lua scripts in ``workers/scripts/``, loaded by name, and several script calls sent in one round trip."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script


def lua_script(name: str) -> str:
    """The source of ``workers/scripts/<name>.lua``."""
    return resources.files("workers").joinpath("scripts", f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True)
class ScriptCall:
    """One call of a registered script, not sent yet (see :func:`run_together`)."""

    script: Script
    keys: Sequence[str]
    args: Sequence[Any]

    def run(self) -> Any:
        return self.script(keys=list(self.keys), args=list(self.args))


def run_together(client: redis.Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    """Send ``calls`` in one round trip and return their results in order.

    They go as ``EVALSHA`` in one write (see :func:`exchange`), run by Redis in order but not
    atomically (other clients' commands may run between them), without redis-py's per-pipeline
    ``SCRIPT EXISTS`` check (a second round trip). A call whose script Redis does not have (a
    restarted Redis) is run again on its own afterwards, which loads it: so a call that reads
    what an earlier one wrote must tolerate finding it not written yet (``finish.lua``'s guard
    then refuses, and the caller publishes what the commit did). Any error a script raised is
    raised here, after every call has run.
    """
    if len(calls) == 1:
        return [calls[0].run()]
    results = run_each(client, calls)
    for value in results:
        if isinstance(value, redis.ResponseError):
            raise value
    return results


def run_each(client: redis.Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    """Like :func:`run_together`, but an error a script raised takes that call's place in the
    list instead of being raised (connection errors still raise)."""
    results = exchange(client, [("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
                                for call in calls])
    for index, value in enumerate(results):
        if isinstance(value, redis.exceptions.NoScriptError):
            try:
                results[index] = calls[index].run()
            except redis.ResponseError as exc:
                results[index] = exc
    return results


def exchange(client: redis.Redis, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Write ``commands`` in one send on one pooled connection and read every reply; an error
    reply takes its command's place in the list.

    What a redis-py pipeline does on the wire, without its per-call bookkeeping (a pipeline
    object, a command stack, response callbacks, a chunking encoder): the worker does this twice
    per command, and it costs about half as much CPU. A dropped connection is retried the way redis-py retries
    its own pipelines (the connection's retry policy, reconnecting in between).
    """
    pool = client.connection_pool
    connection: Any = pool.get_connection()  # redis-py leaves its Connection methods untyped

    def send_and_read() -> list[Any]:
        connection.send_packed_command([packed(commands)])
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(connection.read_response())
            except redis.ResponseError as exc:
                replies.append(exc)
        return replies

    try:
        result: list[Any] = connection.retry.call_with_retry(send_and_read, lambda _error: connection.disconnect())
        return result
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)


def packed(commands: Sequence[tuple[Any, ...]]) -> bytes:
    """``commands`` in the Redis protocol (RESP), each argument encoded as redis-py's encoder
    does: bytes as they are, text as UTF-8, numbers by ``repr``; anything else is refused."""
    parts: list[bytes] = []
    for command in commands:
        parts.append(b"*%d\r\n" % len(command))
        for arg in command:
            data = _encoded(arg)
            parts += (b"$%d\r\n" % len(data), data, b"\r\n")
    return b"".join(parts)


def _encoded(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value).encode()
    raise redis.DataError(f"Invalid input of type: '{type(value).__name__}'. Convert to bytes, str, int or float.")
