"""The Lua scripts in ``workers/scripts/``, loaded by name, and several script calls sent in one round trip."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script

from workers.wire import exchange


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

    They go as ``EVALSHA`` in one write (:func:`workers.wire.exchange`), run by Redis in order but not
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
