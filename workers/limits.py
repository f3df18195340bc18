"""Per-backend limits held in Redis: a concurrency cap, a calls-per-second cap and a circuit breaker.

Every worker process on every host takes a *lease* before it calls a panel and gives it back
after, through two Lua scripts, so the caps hold across the whole fleet. A lease expires on its
own (the call's timeouts plus :data:`~workers.constants.LEASE_MARGIN_MS`) if its holder dies.

The breaker counts consecutive transient failures (:class:`~workers.errors.PanelUnavailable`);
``breaker_failures`` of them open it. While it is open no call is made: the command is deferred
(:class:`~workers.errors.Defer`, reason ``backend_down``), which re-runs it later *without*
counting an attempt. After ``breaker_cooldown_ms`` one probe call goes through; an answer closes
the breaker, another failure keeps it open for one more cooldown.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from workers.constants import LEASE_MARGIN_MS
from workers.errors import Defer, PanelError, PanelUnavailable
from workers.lua import ScriptCall, lua_script
from workers.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Longest a worker thread waits in place for a full cap before deferring the command instead.
BUSY_WAIT_MS = 2_000
#: Seconds a call waits for Redis to come back before it fails (and is retried as an attempt).
REDIS_WAIT_S = 30.0


@dataclass(frozen=True)
class SlotRequest:
    """A call slot asked for on one backend: the lease id it would be, and the acquire call
    (sent alone, or with other calls in one round trip)."""

    backend: str
    lease: str
    call: ScriptCall


def outcome_of(exc: BaseException) -> str:
    """What a failed call tells the breaker: ``down`` (nothing answered), ``answered`` (the
    panel answered, even with an error) or ``other`` (the call never got that far)."""
    if isinstance(exc, PanelUnavailable):
        return "down"
    if isinstance(exc, PanelError):
        return "answered"
    return "other"


class BackendLimits:
    """Leases, rate and breaker for every configured backend, shared through Redis."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.keys = settings.keys
        self._acquire = client.register_script(lua_script("limits_acquire"))
        self._release = client.register_script(lua_script("limits_release"))

    def call_holding(self, backend: str, lease: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` holding ``lease``. If it fails, the slot is given back with what the failure
        tells the breaker (:class:`Defer` if the breaker is now open); if it succeeds, the caller
        gives the slot back (``answered``), alone or with other calls (:meth:`give_back_call`)."""
        try:
            return fn()
        except BaseException as exc:
            outcome = outcome_of(exc)
            state = self.give_back(backend, lease, outcome)
            if outcome == "down" and state in ("open", "opened"):
                if state == "opened":
                    logger.warning("breaker of %s opened after repeated failures (%s)", backend,
                                   getattr(exc, "kind", type(exc).__name__))
                raise Defer(self._cooldown_ms(), "backend_down", f"{backend} is down: {exc}") from exc
            raise

    def settled(self, backend: str, state: Any) -> str:
        """Note the breaker state a give-back returned (logs a breaker that closed again)."""
        text = _text(state)
        if text == "reclosed":
            logger.warning("breaker of %s closed: the backend answers again", backend)
        return text

    def breaker(self, backend: str) -> dict[str, str]:
        """The breaker hash of ``backend`` (state, failures, opens, opened_at, closed_at)."""
        raw: Any = self.client.hgetall(self.keys.breaker(backend))
        data = {k.decode(): v.decode() for k, v in raw.items()}
        data.setdefault("state", "closed")
        return data

    def in_flight(self, backend: str) -> int:
        """Unexpired leases on ``backend`` now."""
        key = self.keys.backend_inflight(backend)
        return int(self.client.zcount(key, int(time.time() * 1000), "+inf"))

    def _cooldown_ms(self) -> int:
        return self.settings.breaker_cooldown_ms

    def _lease_ttl_ms(self, backend: str) -> int:
        config = self.settings.backends.get(backend)
        if config is None:
            return 60_000
        return int((config.connect_timeout + config.read_timeout) * 1000) + LEASE_MARGIN_MS

    def request(self, backend: str, lease: str | None = None) -> SlotRequest:
        """The acquire call for a slot on ``backend`` (a new lease id unless ``lease`` is given)."""
        config = self.settings.backends.get(backend)
        cap = config.max_concurrency if config else 8
        rate = config.max_rate if config else 0.0
        lease = lease or uuid.uuid4().hex
        keys = [
            self.keys.backend_inflight(backend), self.keys.backend_rate(backend),
            self.keys.breaker(backend), self.keys.breaker_probe(backend),
        ]
        args = [int(time.time() * 1000), lease, self._lease_ttl_ms(backend), cap, rate]
        return SlotRequest(backend, lease, ScriptCall(self._acquire, keys, args))

    @staticmethod
    def granted(reply: Any) -> bool:
        """Whether an acquire reply gave the slot."""
        return _text(reply[0]) in ("ok", "probe")

    def take(self, request: SlotRequest, *, first: Any = None) -> str:
        """Take the slot ``request`` asks for; returns its lease id. ``first`` is the reply to
        ``request`` when it was already sent together with other calls.

        Waits in place while the concurrency cap is full (woken when a slot is given back), up
        to :data:`BUSY_WAIT_MS`; raises :class:`Defer` after that or while the breaker is open.
        """
        backend, lease = request.backend, request.lease
        deadline = time.monotonic() + BUSY_WAIT_MS / 1000
        reply = first
        while True:
            if reply is None:
                try:
                    reply = self.request(backend, lease).call.run()
                except (redis.ConnectionError, redis.TimeoutError):
                    # Redis restarting: no call was made yet, so waiting costs nothing but time.
                    if time.monotonic() > deadline + REDIS_WAIT_S:
                        raise
                    time.sleep(0.25)
                    continue
            verdict, wait_ms = _text(reply[0]), int(reply[1])
            reply = None
            if verdict in ("ok", "probe"):
                return lease
            if verdict == "open":
                raise Defer(wait_ms + random.randint(0, 250), "backend_down", f"{backend}: circuit breaker open")
            if time.monotonic() + wait_ms / 1000 > deadline:
                raise Defer(wait_ms + random.randint(50, 500), "backend_busy", f"{backend}: call caps full")
            if verdict == "full":
                # Woken as soon as any holder gives a slot back (limits_release.lua), not by polling.
                self.client.blpop([self.keys.backend_freed(backend)], timeout=wait_ms / 1000)
            else:
                time.sleep(wait_ms / 1000 + random.uniform(0, 0.02))

    def give_back_call(self, backend: str, lease: str, outcome: str) -> ScriptCall:
        """The call that gives ``lease`` back and tells the breaker the call's ``outcome``."""
        keys = [self.keys.backend_inflight(backend), self.keys.breaker(backend), self.keys.breaker_probe(backend),
                self.keys.backend_freed(backend)]
        args: list[str | int] = [lease, outcome, int(time.time() * 1000), self.settings.breaker_failures,
                                 self._cooldown_ms()]
        return ScriptCall(self._release, keys, args)

    def give_back(self, backend: str, lease: str, outcome: str) -> str:
        """Give ``lease`` back now; returns the breaker state after it."""
        call = self.give_back_call(backend, lease, outcome)
        for delay in (0.05, 0.2, 0.5, 1.0, 2.0):
            try:
                return _text(call.run())
            except (redis.ConnectionError, redis.TimeoutError):
                # The lease expires on its own; keep trying briefly so the breaker learns the outcome.
                time.sleep(delay)
        return "unknown"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
