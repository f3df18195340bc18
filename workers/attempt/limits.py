"""Per-backend limits held in Redis: a concurrency cap, a calls-per-second cap and a circuit breaker.

Every worker process on every host takes a *lease* before it calls a panel and gives it back
after, through two Lua scripts, so the caps hold across the whole fleet. A lease expires on its
own (the call's timeouts plus :data:`~workers.constants.LEASE_MARGIN_MS`) if its holder dies.

When the concurrency cap is full the command is *parked* for that backend (in Redis, fleet-wide:
:meth:`~workers.store.command_store.CommandStore.schedule_retry` with ``parked``), ranked by its
priority (urgent first) and then by arrival, and its worker thread goes on to other work: one
full or slow backend never holds threads that other backends' commands need. Each give-back
releases the first parked command to the head of its queue (``limits_release.lua``), and every
heartbeat releases parked commands of backends with room (:meth:`BackendLimits.unpark_call`), in
case a holder died without giving back.

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
from workers.settings import Settings
from workers.store.lua import ScriptCall, lua_script, registered, run_ahead
from workers.store.wire import Ahead, as_text

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Longest a worker thread waits in place for the calls-per-second cap before deferring instead.
BUSY_WAIT_MS = 2_000
#: Seconds a call waits for Redis to come back before it fails (and is retried as an attempt).
REDIS_WAIT_S = 30.0


def park_score(queue: str, arrival_ms: int) -> int:
    """Where a parked command stands in its backend's line: by its queue (urgent first), then by
    arrival (Redis sorted-set scores keep integers up to 2^53 exact)."""
    rank = QUEUES.index(queue) if queue in QUEUES else len(QUEUES)
    return (rank << 42) + arrival_ms


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

    def __init__(self, client: redis.Redis, settings: Settings, *, holder: str = "") -> None:
        self.client = client
        self.settings = settings
        #: The worker process whose leases these are: a lease id starts ``<holder>/``, so the reap
        #: that finds the process dead frees its slots at once (``reap.lua``) instead of at expiry.
        self.holder = holder
        self.keys = settings.keys
        self._acquire = registered(client, lua_script("limits_acquire"))
        self._release = registered(client, lua_script("limits_release"))
        self._unpark = registered(client, lua_script("unpark"))

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
        text = as_text(state)
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

    def request(self, backend: str, lease: str | None = None) -> SlotRequest:
        """The acquire call for a slot on ``backend`` (a new lease id unless ``lease`` is given)."""
        cap, rate = self._caps(backend)
        # Unique, not secret (see messages.redis_message_id).
        lease = lease or f"{self.holder}/{random.getrandbits(96):024x}"
        keys = [self.keys.backend_inflight(backend), self.keys.backend_rate(backend),
                self.keys.breaker(backend), self.keys.breaker_probe(backend)]
        args = [int(time.time() * 1000), lease, self._lease_ttl_ms(backend), cap, rate]
        return SlotRequest(backend, lease, ScriptCall(self._acquire, keys, args))

    @staticmethod
    def claimed(reply: Any) -> bool:
        """Whether an acquire reply gave the slot."""
        return as_text(reply[0]) in ("ok", "probe")

    def take(self, request: SlotRequest, *, first: Any = None) -> str:
        """Take the slot ``request`` asks for; returns its lease id. ``first`` is the reply to
        ``request`` when it was already sent together with other calls.

        Raises :class:`Defer`: parked for the backend (``cap_full``) when its concurrency cap is
        full, delayed while its breaker is open; waits in place only for the calls-per-second
        cap, up to :data:`BUSY_WAIT_MS`.
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
            verdict, wait_ms = as_text(reply[0]), int(reply[1])
            reply = None
            if verdict in ("ok", "probe"):
                return lease
            if verdict == "open":
                raise Defer(wait_ms + random.randint(0, 250), "backend_down", f"{backend}: circuit breaker open")
            if verdict == "full":
                raise Defer(wait_ms, "cap_full", f"{backend}: {self._caps(backend)[0]} calls in flight",
                            parked_on=backend)
            if time.monotonic() + wait_ms / 1000 > deadline:
                raise Defer(wait_ms + random.randint(50, 500), "backend_busy", f"{backend}: calls-per-second cap")
            time.sleep(wait_ms / 1000 + random.uniform(0, 0.02))

    def give_back_call(self, backend: str, lease: str, outcome: str) -> ScriptCall:
        """The call that gives ``lease`` back (releasing the first parked command) and tells the
        breaker the call's ``outcome``."""
        cap, _rate = self._caps(backend)
        keys = [self.keys.backend_inflight(backend), self.keys.breaker(backend), self.keys.breaker_probe(backend),
                self.keys.backend_parked(backend)]
        args: list[str | int | float] = [lease, outcome, int(time.time() * 1000), self.settings.breaker_failures,
                                         self._cooldown_ms(), cap, self.keys.dramatiq_namespace]
        return ScriptCall(self._release, keys, args)

    def unpark_call(self) -> ScriptCall:
        """Release parked commands of every backend with room and a breaker not open (run by each
        worker process's heartbeat: the safety net for a holder that died without giving back)."""
        keys: list[str] = []
        caps: list[str | int | float] = []
        for name, config in sorted(self.settings.backends.items()):
            keys += [self.keys.backend_inflight(name), self.keys.backend_parked(name), self.keys.breaker(name)]
            caps.append(config.max_concurrency)
        return ScriptCall(self._unpark, keys, [int(time.time() * 1000), self.keys.dramatiq_namespace, *caps])

    def release_parked(self) -> int:
        """Run :meth:`unpark_call` now; returns how many commands it released."""
        return int(self.unpark_call().run()) if self.settings.backends else 0

    def publish_caps(self) -> None:
        """Tell the fetch every configured backend's concurrency cap (``Keys.backend_caps``), so it
        parks commands of a full backend before a worker thread begins them."""
        caps = [part for name, config in self.settings.backends.items() for part in (name, config.max_concurrency)]
        if caps:
            self.client.hset(self.keys.backend_caps, items=caps)

    def parked(self, backend: str) -> int:
        """Commands parked for ``backend`` now."""
        return int(self.client.zcard(self.keys.backend_parked(backend)))

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
                return as_text(call.run())
            except (redis.ConnectionError, redis.TimeoutError):
                # The lease expires on its own; keep trying briefly so the breaker learns the outcome.
                time.sleep(delay)
        return "unknown"
