"""The Lua scripts in ``workers/store/scripts/``, loaded by name, and several script calls sent in one round trip."""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script

from schemas.events import SCRIPT_TEXTS
from workers.constants import DOORBELL_TOKENS, DOORBELL_TTL_MS
from workers.store.wire import Ahead, exchange, send_ahead

logger = logging.getLogger(__name__)

#: Every script source registered in this process, by SHA1 (what :func:`load_scripts` loads).
_sources: dict[str, str | bytes] = {}


#: The files of shared helper functions (``workers/store/scripts/<file>.lua``), each function defined once.
HELPER_FILES = ("prelude", "lifecycle", "stamps")


def lua_script(name: str) -> str:
    """The source of ``workers/store/scripts/<name>.lua``, after the shared helper functions it calls
    (and those they call), from :data:`HELPER_FILES`. Only those: every call of a script defines
    its functions anew, so a helper it never calls would cost each call."""
    body = _figures(_read(name))
    needed = {helper for helper in helpers() if _calls(body, helper)}
    while True:
        more = {other for helper in needed for other in helpers() if other != helper
                and _calls(helpers()[helper], other)} - needed
        if not more:
            break
        needed |= more
    return "".join(source for helper, source in helpers().items() if helper in needed) + body


@functools.cache
def helpers() -> dict[str, str]:
    """Every shared helper function's source by name, in the order of :data:`HELPER_FILES` (a
    helper is defined before those that call it)."""
    return {match.group(1): match.group(0)
            for file in HELPER_FILES
            for match in re.finditer(r"(?ms)^local function (\w+)\(.*?^end\n", _figures(_read(file)))}


@functools.cache
def prelude() -> str:
    """``workers/store/scripts/prelude.lua``, figures filled in: the doorbell helpers."""
    return _figures(_read("prelude"))


def _figures(source: str) -> str:
    """``source`` with the figures and texts defined in Python filled in (each defined once)."""
    source = source.replace("DOORBELL_TOKENS", str(DOORBELL_TOKENS)).replace("DOORBELL_TTL_MS", str(DOORBELL_TTL_MS))
    return re.sub(r"\b[A-Z_]+_TEXT\b", lambda match: _lua_string(SCRIPT_TEXTS[match.group(0)]), source)


def _lua_string(text: str) -> str:
    if not all(" " <= char <= "~" for char in text):
        raise ValueError(f"a script text must be printable ASCII: {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _calls(source: str, helper: str) -> bool:
    return re.search(rf"(?<![\w.:]){helper}\(", source.replace(f"local function {helper}(", "")) is not None


def _read(name: str) -> str:
    return resources.files("workers.store").joinpath("scripts", f"{name}.lua").read_text(encoding="utf-8")


def registered(client: redis.Redis, source: str | bytes) -> Script:
    """``client.register_script(source)``, remembered so :func:`load_scripts` can load it before
    its first call."""
    script = client.register_script(source)
    _sources[script.sha] = source
    return script


def load_scripts(client: redis.Redis) -> int:
    """Load every registered script into Redis now, in one round trip (a worker does this as it
    starts): its first commands then pay no ``NOSCRIPT`` retry, and calls sent ahead
    (:func:`run_ahead`) run from the first one. Returns how many were loaded."""
    sources = list(_sources.values())
    pipe = client.pipeline(transaction=False)
    for source in sources:
        pipe.script_load(source)
    pipe.execute()
    return len(sources)


@dataclass(frozen=True)
class ScriptCall:
    """One call of a registered script, not sent yet (see :func:`run_together`)."""

    script: Script
    keys: Sequence[str]
    args: Sequence[Any]

    def run(self) -> Any:
        """Run the call; a refusal that passes (:func:`transient_refusal`) is waited out."""
        return refusals_waited(lambda: self.script(keys=list(self.keys), args=list(self.args)))

    @property
    def command(self) -> tuple[Any, ...]:
        """The call as the Redis command that runs it (``EVALSHA``)."""
        return ("EVALSHA", self.script.sha, len(self.keys), *self.keys, *self.args)


def run_ahead(client: redis.Redis, calls: Sequence[ScriptCall]) -> Ahead:
    """Send ``calls`` now and read their replies with the thread's next round trip
    (:func:`workers.store.wire.send_ahead`); a call Redis has no script for comes back as a
    ``NoScriptError`` reply, not run."""
    return send_ahead(client, [call.command for call in calls])


def run_together(client: redis.Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    """Send ``calls`` in one round trip and return their results in order.

    They go as ``EVALSHA`` in one write (:func:`workers.store.wire.exchange`), run by Redis in order but not
    atomically (other clients' commands may run between them), without redis-py's per-pipeline
    ``SCRIPT EXISTS`` check (a second round trip). A call whose script Redis does not have (a
    restarted Redis) is run again on its own afterwards, which loads it: so a call that reads
    what an earlier one wrote must tolerate finding it not written yet (``finish.lua``'s guard
    then refuses, and the caller publishes what the commit did). Any error a script raised is
    raised here, after every call has run.
    """
    results = run_each(client, calls)
    for value in results:
        if isinstance(value, redis.ResponseError):
            raise value
    return results


def run_each(client: redis.Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    """Like :func:`run_together`, but an error a script raised takes that call's place in the
    list instead of being raised (connection errors still raise)."""
    return loaded(calls, exchange(client, [call.command for call in calls]))


def loaded(calls: Sequence[ScriptCall], replies: Sequence[Any]) -> list[Any]:
    """``replies`` to ``calls`` sent as ``EVALSHA``, with the reply of each call Redis had no
    script for (a restarted Redis) replaced by running that call now, which loads the script; an
    error it raises takes its place."""
    results = list(replies)
    for index, value in enumerate(results):
        if isinstance(value, redis.exceptions.NoScriptError) or transient_refusal(value):
            try:
                results[index] = calls[index].run()
            except redis.ResponseError as exc:
                results[index] = exc
    return results


#: Refusals Redis takes back by itself: out of memory under ``noeviction``, a replica that cannot
#: take writes yet, a busy script, a failover in progress. (``LOADING`` arrives as redis-py's
#: ``BusyLoadingError``, a connection error, and is waited out with those.)
TRANSIENT_REFUSALS = ("OOM", "READONLY", "BUSY", "MASTERDOWN", "NOREPLICAS", "TRYAGAIN", "CLUSTERDOWN", "LOADING")
#: Longest a script call waits for Redis to take its refusal back before the refusal is raised.
REFUSAL_WAIT_S = 3600.0


def transient_refusal(value: object) -> bool:
    """Whether ``value`` is a Redis error reply that passes (see :data:`TRANSIENT_REFUSALS`)."""
    if isinstance(value, redis.exceptions.OutOfMemoryError | redis.exceptions.ReadOnlyError
                  | redis.exceptions.TryAgainError):
        return True
    if not isinstance(value, redis.ResponseError) or isinstance(value, redis.exceptions.NoScriptError):
        return False
    # redis-py takes the code off the text of the errors it has a class for; the rest keep it.
    code = getattr(value, "status_code", None) or str(value).split(" ", 1)[0]
    return code in TRANSIENT_REFUSALS


def refusals_waited(fn: Any, *, deadline_s: float = REFUSAL_WAIT_S) -> Any:
    """``fn()``, sent again with backoff (50 ms doubling to 2 s) while Redis refuses it for a
    passing reason; other errors are raised at once."""
    delay, start = 0.05, time.monotonic()
    while True:
        try:
            return fn()
        except redis.ResponseError as exc:
            if not transient_refusal(exc) or time.monotonic() - start > deadline_s:
                raise
            note_wait(exc)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


class _Quiet:
    """Redis waits are logged when they start and then at most every :attr:`every_s`,
    process-wide: every worker thread and the ingest loop wait at once, and a line each per
    backoff step flooded the log."""

    lock = threading.Lock()
    last = float("-inf")
    every_s = 30.0


def note_wait(exc: BaseException) -> None:
    """Log that Redis is being waited for (see :class:`_Quiet`)."""
    now = time.monotonic()
    with _Quiet.lock:
        if now - _Quiet.last < _Quiet.every_s:
            return
        _Quiet.last = now
    what = f"refused ({getattr(exc, 'status_code', None) or type(exc).__name__})" if isinstance(
        exc, redis.ResponseError) else f"unreachable ({type(exc).__name__})"
    logger.warning("Redis %s; waiting it out (logged at most every %.0f s)", what, _Quiet.every_s)
