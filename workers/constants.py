"""Redis key names and defaults, in one place.

Every Redis key the package touches is built here, so an operator can read the whole data
model off this file and ``redis-cli --scan --pattern 'mailops:*'`` holds no surprises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

#: Stream a producer adds commands to (field ``body``, JSON). Part of the wire contract.
DEFAULT_COMMANDS_STREAM = "mailops:commands"
#: Stream every lifecycle and terminal event is added to (field ``body``, JSON).
DEFAULT_EVENTS_STREAM = "mailops:events"
#: Consumer group that ingests the commands stream.
INGEST_GROUP = "mailops-ingest"
#: Default seconds a panel call's state collapses repeats of it (Settings.repeat_window_s).
DEFAULT_REPEAT_WINDOW_S = 60
#: Why a command waits (the ``waiting`` event's ``details.reason``) -> the gauge's ``reason`` label.
#: (``cap_full``: the rate cap's waits here, the concurrency cap's parked commands from their backend's parked line.)
WAITING_REASONS = {"backend_down": "backend_down", "backend_busy": "cap_full", "target_busy": "target_busy"}
#: A waiting command still counts this long (ms) past the time it looks again (it is then being re-run).
WAITING_GRACE_MS = 2000
#: Field that holds the JSON body in stream entries.
BODY_FIELD = "body"

#: Dramatiq queue for urgent commands (abuse); never waits behind bulk work.
QUEUE_URGENT = "urgent"
#: Dramatiq queue for ordinary commands (billing webhooks, operators).
QUEUE_DEFAULT = "default"
#: Dramatiq queue for bulk migrations.
QUEUE_BULK = "bulk"
#: Every queue, most urgent first.
QUEUES = (QUEUE_URGENT, QUEUE_DEFAULT, QUEUE_BULK)

#: How long a finished command's record (its idempotency key) is remembered, in seconds.
DEFAULT_IDEMPOTENCY_TTL_S = 7 * 24 * 3600
#: Approximate cap on the length of the events stream (XADD MAXLEN ~).
DEFAULT_EVENTS_MAXLEN = 1_000_000
#: Milliseconds without a heartbeat after which a worker process is considered dead.
DEFAULT_HEARTBEAT_TIMEOUT_MS = 10_000
#: Deaths of a shared process a command must be caught in before it runs alone (workers/attempt/isolation.py):
#: one is what every unclean stop (a deploy's kill, the OOM killer) does to all its running commands.
SUSPECT_AFTER_SHARED_LOSSES = 2
#: Consecutive transient connection failures that open a backend's circuit breaker.
DEFAULT_BREAKER_FAILURES = 5
#: Milliseconds an open breaker waits before letting one probe call through.
DEFAULT_BREAKER_COOLDOWN_MS = 2_000
#: Seconds a command may wait for a down backend (open breaker) before it is dead-lettered.
DEFAULT_OUTAGE_TOLERANCE_S = 3600
#: Tokens a queue's doorbell keeps, and how long it keeps them (``MailopsBroker.ring`` and the
#: scripts' ``ring``, ``workers/store/scripts/prelude.lua``).
DOORBELL_TOKENS = 16
DOORBELL_TTL_MS = 60_000
#: Attempts kept in a command's history (the oldest are dropped beyond this).
DEFAULT_HISTORY_MAX = 50
#: Milliseconds an in-flight call lease outlives the call's own timeouts if its holder dies.
LEASE_MARGIN_MS = 2_000
#: The SPF record ``onspf`` installs on cPanel unless a backend sets ``spf_record``: the domain's
#: own A and MX hosts may send its mail, others soft-fail (marked, not refused).
DEFAULT_SPF_RECORD = "v=spf1 +a +mx ~all"
#: Milliseconds an ingest entry may stay pending with a consumer before another reclaims it.
DEFAULT_INGEST_CLAIM_IDLE_MS = 10_000


#: Characters a name may keep as is inside a key; anything else (``:`` above all, and the glob
#: characters ``*?[]``) is percent-encoded, so an id or target can never spell another key.
_KEY_SAFE = re.compile(r"[^A-Za-z0-9._@/-]")


def key_part(name: str) -> str:
    """``name`` as one segment of a key name: ``X:history`` -> ``X%3Ahistory`` (never contains ``:``)."""
    return _KEY_SAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), name)


def key_name(part: str) -> str:
    """The name a :func:`key_part` segment encodes."""
    return unquote(part)


@dataclass(frozen=True)
class Keys:
    """Builds every Redis key name from one prefix."""

    prefix: str = "mailops"

    @property
    def dramatiq_namespace(self) -> str:
        """Namespace of Dramatiq's own queues, ack sets and heartbeats."""
        return f"{self.prefix}:dq"

    @property
    def dramatiq(self) -> DramatiqKeys:
        """The keys Dramatiq's broker (and mailops' scripts beside it) use in that namespace."""
        return DramatiqKeys(self.dramatiq_namespace)

    def command(self, command_id: str) -> str:
        """Hash holding one command's record: fingerprint, status, attempts, outcome."""
        return f"{self.prefix}:cmd:{key_part(command_id)}"

    @property
    def routes(self) -> str:
        """Hash of target (domain or cPanel account) -> backend name."""
        return f"{self.prefix}:routes"

    def backend_inflight(self, backend: str) -> str:
        """Sorted set of in-flight call leases on one backend, scored by expiry (ms)."""
        return f"{self.prefix}:backend:{backend}:inflight"

    def backend_parked(self, backend: str) -> str:
        """Sorted set of commands parked while one backend's concurrency cap is full ("queue/message
        id", most urgent first, then first come); a give-back releases the first (``unpark`` in
        ``prelude.lua``)."""
        return f"{self.prefix}:backend:{backend}:parked"

    @property
    def backend_caps(self) -> str:
        """Hash of backend name -> concurrency cap, written by every worker as it starts (its
        settings'); the fetch parks a command whose backend's cap is full (``fetch.lua``)."""
        return f"{self.prefix}:backend_caps"

    def backend_rate(self, backend: str) -> str:
        """Sorted set of recent call start times on one backend (sliding window)."""
        return f"{self.prefix}:backend:{backend}:rate"

    def breaker(self, backend: str) -> str:
        """Hash with one backend's circuit-breaker state."""
        return f"{self.prefix}:backend:{backend}:breaker"

    def command_history(self, command_id: str) -> str:
        """List of one command's attempts (JSON: number, start, end, worker, error), oldest first."""
        return f"{self.prefix}:cmd:{key_part(command_id)}:history"

    def waiting(self, backend: str, reason: str) -> str:
        """Sorted set of commands waiting on one backend for one reason, scored by the time (ms) they
        look again (kept by retry.lua; read by the ``mailops_commands_waiting`` gauge)."""
        return f"{self.prefix}:backend:{backend}:waiting:{reason}"

    def breaker_probe(self, backend: str) -> str:
        """String held by the one call allowed to probe a half-open breaker (expires)."""
        return f"{self.prefix}:backend:{backend}:probe"

    @property
    def dead_letters(self) -> str:
        """Sorted set of dead-lettered command ids, scored by time (ms)."""
        return f"{self.prefix}:dlq"

    def holds(self, backend: str, target: str, aspect: str) -> str:
        """Hash of reason -> hold record for one target and aspect on one backend (a target's
        identity is (backend, target, aspect): account names repeat across servers)."""
        return f"{self.holds_family}:{key_part(backend)}:{aspect}:{key_part(target)}"

    def order(self, backend: str, target: str, aspect: str) -> str:
        """Hash with the last applied order stamp and lease for one target and aspect on one backend."""
        return f"{self.order_family}:{key_part(backend)}:{aspect}:{key_part(target)}"

    @property
    def holds_family(self) -> str:
        """What every :meth:`holds` key starts with (``<family>:<backend>:<aspect>:<target>``)."""
        return f"{self.prefix}:hold"

    @property
    def order_family(self) -> str:
        """What every :meth:`order` key starts with (``<family>:<backend>:<aspect>:<target>``)."""
        return f"{self.prefix}:ordering"

    def legacy_holds(self, target: str, aspect: str) -> str:
        """Holds hash as versions before backend-scoped identity wrote it (``workers.store.legacy_keys``
        moves it; never written)."""
        return f"{self.prefix}:holds:{aspect}:{target}"

    def legacy_order(self, target: str, aspect: str) -> str:
        """Order record as versions before backend-scoped identity wrote it (moved, never written)."""
        return f"{self.prefix}:order:{aspect}:{target}"

    @property
    def audit(self) -> str:
        """Stream of security-relevant decisions (rejections, forced releases)."""
        return f"{self.prefix}:audit"

    def rejection(self, command_id: str) -> str:
        """String holding the ``rejected`` event of an id refused before admission (kept for the
        idempotency TTL, so ``GET /v1/commands/ID`` and ``mailops batch status`` can answer it)."""
        return f"{self.prefix}:rejected:{key_part(command_id)}"

    def batch(self, batch_id: str) -> str:
        """Hash with one bulk batch's metadata and counters."""
        return f"{self.prefix}:batch:{key_part(batch_id)}"

    @property
    def command_index(self) -> str:
        """Sorted set of every admitted command id, scored by admission time (ms); trimmed to the
        record TTL by ``admit.lua``. The console pages through it (never a scan)."""
        return f"{self.prefix}:idx:cmd"

    def command_index_by(self, field: str, value: str) -> str:
        """Sorted set of the ids admitted for one ``field`` value (target, backend, producer, batch),
        scored by admission time (ms); written and trimmed by ``admit.lua`` (per target and batch:
        many small sets, which also expire with their last record)."""
        return f"{self.prefix}:idx:{field}:{key_part(value)}"

    @property
    def batch_index(self) -> str:
        """Sorted set of batch ids, scored by their first admitted command (ms)."""
        return f"{self.prefix}:idx:batches"

    @property
    def holds_index(self) -> str:
        """Sorted set of the :meth:`holds` keys that hold at least one reason, scored by when they
        first did (ms); kept by the ordering commit, read by the console's holds page."""
        return f"{self.prefix}:idx:holds"

    def console_session(self, digest: str) -> str:
        """Hash of one console session (user, role, CSRF token), named by the SHA-256 of its cookie."""
        return f"{self.prefix}:console:session:{digest}"

    def console_logins(self, user: str) -> str:
        """Counter of one console user's recent failed logins (expires: the rate limit's window)."""
        return f"{self.prefix}:console:logins:{key_part(user)}"

    @property
    def workers(self) -> str:
        """Sorted set of live worker process ids, scored by last heartbeat (ms)."""
        return f"{self.prefix}:workers"


@dataclass(frozen=True)
class DramatiqKeys:
    """Key names inside one Dramatiq namespace (Dramatiq's Redis broker names them so; the
    doorbells and wake lists are mailops' own, beside them)."""

    namespace: str

    def queue(self, queue: str) -> str:
        """List of the Redis message ids waiting on ``queue`` (``<queue>.DQ`` for its delay queue)."""
        return f"{self.namespace}:{queue}"

    def messages(self, queue: str) -> str:
        """Hash of Redis message id -> message data for ``queue``."""
        return f"{self.namespace}:{queue}.msgs"

    def doorbell(self, queue: str) -> str:
        """List a token is pushed to for each message put on ``queue`` (wakes an idle consumer)."""
        return f"{self.namespace}:{queue}.bell"

    def acks(self, broker_id: str, queue: str) -> str:
        """Set of the Redis message ids one worker process has fetched from ``queue`` and not acknowledged."""
        return f"{self.namespace}:__acks__.{broker_id}.{queue}"

    def wake(self, broker_id: str) -> str:
        """List one worker process's idle consumers also wait on, so a stop does not wait out their waits."""
        return f"{self.namespace}:__wake__.{broker_id}"

    @property
    def heartbeats(self) -> str:
        """Sorted set of worker process (broker) id -> last heartbeat (ms)."""
        return f"{self.namespace}:__heartbeats__"
