"""Per-backend limits held in Redis: a concurrency cap, a calls-per-second cap and a circuit breaker.

Every worker process on every host takes a *lease* before it calls a panel and gives it back
after, through two Lua scripts, so the caps hold across the whole fleet. A lease expires on its
own (the call's timeouts plus :data:`~workers.constants.LEASE_MARGIN_MS`) if its holder dies.

When the concurrency cap is full the caller becomes a *waiter*, ranked by its command's priority
(urgent first) and then by arrival, and a give-back hands its slot straight to the first live
waiter, which finds the grant on its own list: the slot goes from one call to the next with no
acquire round trip in between, and an urgent command waiting for a busy backend goes first.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from workers.constants import LEASE_MARGIN_MS, QUEUES
from workers.errors import Defer, PanelError, PanelUnavailable
from workers.lua import ScriptCall, lua_script, registered, run_ahead
from workers.settings import Settings
from workers.wire import Ahead

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Longest a worker thread waits in place for a full cap before deferring the command instead.
BUSY_WAIT_MS = 2_000
#: Seconds a call waits for Redis to come back before it fails (and is retried as an attempt).
REDIS_WAIT_S = 30.0
#: How long a waiter's place in line stays valid after it last asked (ms). A waiter asks again at
#: least every 200 ms (the longest wait ``limits_acquire.lua`` gives it) or withdraws; the rest is
#: room for a busy process. The next give-back skips a waiter silent for longer (it died).
WAITER_TTL_MS = 1_200


def waiter_score(queue: str, now_ms: int) -> int:
    """Where a waiter for a slot stands in line: by its command's queue (urgent first), then by
    arrival (Redis sorted-set scores keep integers up to 2^53 exact)."""
    rank = QUEUES.index(queue) if queue in QUEUES else len(QUEUES)
    return (rank << 42) + now_ms


@dataclass(frozen=True)
class SlotRequest:
    """A call slot asked for on one backend: the lease id it would be, and the acquire call
    (sent alone, or with other calls in one round trip)."""

    backend: str
    lease: str
    #: The queue of the command asking (its place in line if it has to wait).
    queue: str
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
        self._acquire = registered(client, lua_script("limits_acquire"))
        self._release = registered(client, lua_script("limits_release"))

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
        # The pool ends every call by its deadline (workers/backends/connections.py): the lease outlives it.
        return int(config.deadline * 1000) + LEASE_MARGIN_MS

    def _caps(self, backend: str) -> tuple[int, float]:
        config = self.settings.backends.get(backend)
        return (config.max_concurrency, config.max_rate) if config else (8, 0.0)

    def request(self, backend: str, lease: str | None = None, *, queue: str) -> SlotRequest:
        """The acquire call for a slot on ``backend`` (a new lease id unless ``lease`` is given),
        for a command of ``queue``: if it has to wait, it waits in line by that priority."""
        cap, rate = self._caps(backend)
        lease = lease or f"{random.getrandbits(128):032x}"  # unique, not secret (see messages.redis_message_id)
        keys = [
            self.keys.backend_inflight(backend), self.keys.backend_rate(backend),
            self.keys.breaker(backend), self.keys.breaker_probe(backend),
            self.keys.backend_waiters(backend), self.keys.backend_waiter_deadlines(backend),
            self.keys.backend_grant(backend, lease),
        ]
        now = int(time.time() * 1000)
        args = [now, lease, self._lease_ttl_ms(backend), cap, rate, waiter_score(queue, now), WAITER_TTL_MS]
        return SlotRequest(backend, lease, queue, ScriptCall(self._acquire, keys, args))

    @staticmethod
    def claimed(reply: Any) -> bool:
        """Whether an acquire reply gave the slot, or put the lease in line for one."""
        return _text(reply[0]) in ("ok", "probe", "full")

    def take(self, request: SlotRequest, *, first: Any = None) -> str:
        """Take the slot ``request`` asks for; returns its lease id. ``first`` is the reply to
        ``request`` when it was already sent together with other calls.

        Waits in place while the concurrency cap is full, up to :data:`BUSY_WAIT_MS`: in line for
        a give-back to hand it the slot (``limits_release.lua``). Raises :class:`Defer` after that
        or while the breaker is open, having left the line (a slot granted meanwhile goes on to
        the next waiter).
        """
        backend, lease = request.backend, request.lease
        deadline = time.monotonic() + BUSY_WAIT_MS / 1000
        grant = self.keys.backend_grant(backend, lease)
        in_line = False
        reply = first
        try:
            while True:
                if reply is None:
                    try:
                        reply = self.request(backend, lease, queue=request.queue).call.run()
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
                in_line = in_line or verdict == "full"
                if time.monotonic() + wait_ms / 1000 > deadline:
                    raise Defer(wait_ms + random.randint(50, 500), "backend_busy", f"{backend}: call caps full")
                if verdict == "full":
                    # In line: a give-back grants the slot on our own list (limits_release.lua), or,
                    # when it cannot grant, wakes the waiters through the freed list to ask again.
                    woken = self.client.blpop([grant, self.keys.backend_freed(backend)], timeout=wait_ms / 1000)
                    if woken is not None and _text(woken[0]) == grant:
                        return lease
                else:
                    time.sleep(wait_ms / 1000 + random.uniform(0, 0.02))
        except BaseException:
            if in_line:
                # Leave the line; a slot granted to us meanwhile goes on to the next waiter.
                self.give_back(backend, lease, "other")
            raise

    def give_back_call(self, backend: str, lease: str, outcome: str) -> ScriptCall:
        """The call that gives ``lease`` back (handing the slot to the first waiter) and tells the
        breaker the call's ``outcome``; for a waiter giving up, it leaves the line."""
        cap, rate = self._caps(backend)
        keys = [self.keys.backend_inflight(backend), self.keys.breaker(backend), self.keys.breaker_probe(backend),
                self.keys.backend_freed(backend), self.keys.backend_waiters(backend),
                self.keys.backend_waiter_deadlines(backend)]
        args: list[str | int | float] = [lease, outcome, int(time.time() * 1000), self.settings.breaker_failures,
                                         self._cooldown_ms(), self._lease_ttl_ms(backend), cap, rate,
                                         self.keys.backend_grant(backend)]
        return ScriptCall(self._release, keys, args)

    def give_back_ahead(self, backend: str, lease: str) -> Ahead | None:
        """Give back the lease of an answered call now, without waiting for the reply (read with
        the thread's next round trip, see :meth:`settle_ahead`), so the next waiter's call starts
        while this one is still being recorded. ``None`` if it could not be sent."""
        try:
            return run_ahead(self.client, [self.give_back_call(backend, lease, "answered")])
        except redis.RedisError:
            return None

    def settle_ahead(self, backend: str, lease: str, ahead: Ahead | None) -> str:
        """The breaker state a give-back sent ahead returned; if its reply is lost or it did not
        run (a Redis that lost its scripts), it is given back now (giving back twice is harmless)."""
        replies = ahead.replies() if ahead is not None else None
        if replies is None or isinstance(replies[0], redis.ResponseError):
            return self.settled(backend, self.give_back(backend, lease, "answered"))
        return self.settled(backend, replies[0])

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
