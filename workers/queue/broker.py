"""The Dramatiq broker mailops runs on: Dramatiq's Redis broker with deterministic recovery,
consumers that wake when work arrives, and acknowledgements folded into the terminal step."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import compute_backoff, current_millis, dq_name
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message
from dramatiq.middleware import Middleware

from workers.attempt.limits import park_score
from workers.constants import DOORBELL_TOKENS, DOORBELL_TTL_MS, DramatiqKeys, Keys
from workers.queue.messages import backend_of, decoded, encoded, redis_message_id
from workers.settings import Settings
from workers.store.lua import ScriptCall, loaded, lua_script, registered, run_together
from workers.store.wire import as_text, exchange, execute

logger = logging.getLogger(__name__)

#: Message option set once the terminal step (``finish.lua``) has acknowledged the message itself.
ACKED_OPTION = "mailops_acked"
#: Longest an idle consumer (nothing fetched and unacknowledged) waits on its doorbell before it
#: looks at its queue anyway. Every path that queues a message rings the doorbell; this is the
#: safety net, and what an idle worker costs Redis (one round trip per consumer per wait).
IDLE_WAIT_MS = 1_000


class WakingConsumer(_RedisConsumer):
    """Dramatiq's Redis consumer, with these changes.

    * An idle consumer waits on its queue's doorbell (BLPOP) instead of sleeping, so a command is
      fetched as soon as ingest enqueues it, not after a poll interval of up to ``worker_timeout``.
      With nothing in hand it waits up to :data:`IDLE_WAIT_MS` (every enqueue path rings, see
      :meth:`MailopsBroker.ring`); with messages in hand, or a delay queue holding messages until
      their ETA, it keeps Dramatiq's short backoff so acknowledgements and due messages move on time.
    * The fetch rides behind the wait, in the same write (``fetch.lua``, Dramatiq's fetch with a
      heartbeat that only moves forward): the call that waited hands out what rang the doorbell.
    * A fetch that brought fewer messages than it asked for found the queue empty: the next
      look waits on the doorbell instead of fetching again. Together, a command arriving alone
      costs its consumer one round trip, where Dramatiq's poll-then-fetch took two.
    * A message the terminal step already acknowledged (:data:`ACKED_OPTION`) costs no second
      round trip.
    * When Redis drops the connection, the messages it had fetched but not handed out yet are
      not forgotten: they sit in this live process's ack set, where no reaper looks, so the
      broker requeues them once Redis answers again (:meth:`MailopsBroker.strand`).
    """

    #: The last fetch found the queue empty (see the class notes).
    drained = False

    def ack(self, message: MessageProxy) -> None:
        self._let_go(message)
        if message.options.get(ACKED_OPTION):
            self.queued_message_ids.discard(message.message_id)
            return
        super().ack(message)  # type: ignore[no-untyped-call]

    def nack(self, message: MessageProxy) -> None:
        self._let_go(message)
        super().nack(message)  # type: ignore[no-untyped-call]

    def _let_go(self, message: Message[Any] | MessageProxy) -> None:
        self.broker.held[self.queue_name].discard(str(message.options["redis_message_id"]))

    def __next__(self) -> MessageProxy | None:
        try:
            while True:
                if self.message_cache:
                    data = self.message_cache.pop(0)
                    if data is None:
                        continue
                    self.misses = 0
                    message = decoded(data)
                    self.queued_message_ids.add(message.message_id)
                    self.broker.held[self.queue_name].add(str(message.options["redis_message_id"]))
                    return MessageProxy(message)
                if self.queue_name in self.broker.unsure:
                    self._recover()
                messages: list[bytes | None] = []
                wanted = self.prefetch - self.outstanding_message_count
                if wanted > 0 and not self.drained:
                    messages = self._fetch(wanted)
                if not messages:
                    self.misses, backoff_ms = compute_backoff(self.misses, max_backoff=self.timeout)
                    fetched = self._wait(backoff_ms, fetch=wanted)
                    # (A wait that fetched nothing leaves the queue known empty, so the next look
                    # waits again; one that could not fetch leaves the next look to fetch.)
                    self.drained = fetched is not None
                    if not fetched:
                        return None
                    messages = fetched
                self.message_cache = messages
                self.drained = len(messages) < wanted
        except redis.ConnectionError as e:
            self._strand()
            self.broker.unsure.add(self.queue_name)
            raise ConnectionClosed(e) from None  # type: ignore[no-untyped-call]

    def _recover(self) -> None:
        """After a lost connection, put back what this process's ack set for the queue holds and
        no worker thread of it has: a fetch that ran but whose reply was lost, an acknowledgement
        that never arrived. (A message finished meanwhile has left the set first, and Dramatiq's
        requeue moves only ids still in it.)"""
        broker: MailopsBroker = self.broker
        in_set = {as_text(m) for m in broker.client.smembers(broker.keys.acks(broker.broker_id, self.queue_name))}
        lost = sorted(in_set - broker.held[self.queue_name])
        if lost:
            logger.warning("putting back %d messages of %s fetched before Redis dropped the connection",
                           len(lost), self.queue_name)
            broker.do_requeue(self.queue_name, *lost)
            broker.ring(self.queue_name)
        broker.unsure.discard(self.queue_name)

    def _strand(self) -> None:
        ids = [str(decoded(data).options["redis_message_id"]) for data in self.message_cache if data]
        self.message_cache = []
        if ids:
            self.broker.strand(self.queue_name, ids)

    def requeue(self, messages: Any) -> None:
        """Dramatiq's requeue, then ring the queue, if there was anything to put back (a stopping
        worker requeues each consumer's delay queue, nearly always empty: no Redis call for that,
        which during a Redis outage cost each consumer a round of reconnect attempts)."""
        messages = list(messages)
        for message in messages:
            self._let_go(message)
        if messages:
            super().requeue(messages)  # type: ignore[no-untyped-call]
            self.broker.ring(self.queue_name)

    def close(self) -> None:
        """Put back what this consumer fetched and has not handed out: a stopping worker ends the
        consumer's loop after the message in hand, and the rest would otherwise wait in this
        process's ack set until the process is found dead (``heartbeat_timeout`` later)."""
        messages = [decoded(data) for data in self.message_cache if data]
        self.message_cache = []
        if not messages:
            return
        try:
            self.requeue(messages)
        except redis.RedisError as exc:
            logger.warning("could not put %d fetched messages back on %s (%s); they are requeued when this "
                           "process is found dead", len(messages), self.queue_name, exc)

    def _wait(self, backoff_ms: int, *, fetch: int) -> list[bytes | None] | None:
        """Wait for work; return the messages fetched as the wait ended (up to ``fetch`` of them),
        or ``None`` if this wait could not fetch."""
        broker: MailopsBroker = self.broker
        idle = self.outstanding_message_count == 0 and not broker.stopping
        # A delay queue holding messages moves them to their queue between two looks: look often.
        if self.queue_name.endswith(".DQ") and not idle:
            time.sleep(backoff_ms / 1000)
            return None
        # A full prefetch cannot take more until a worker thread finishes one; look again soon
        # (no Redis call until then) rather than after a backoff of up to worker_timeout.
        if fetch <= 0:
            time.sleep(min(backoff_ms, 5) / 1000)
            return None
        timeout_ms = IDLE_WAIT_MS if idle else max(backoff_ms, 10)
        wait = ("BLPOP", broker.keys.doorbell(self.queue_name), broker.wake_key, timeout_ms / 1000)
        if broker.stopping:
            execute(broker.client, *wait)
            return None
        # The fetch goes in the same write, behind the wait: Redis runs it as soon as the wait
        # ends (a blocked client's next command waits for it), so a command arriving alone costs
        # this consumer one round trip, not two. On the thread's own connection (workers.store.wire).
        call = self._fetch_call(fetch)
        reply = loaded([call], exchange(broker.client, [wait, call.command])[1:])[0]
        if isinstance(reply, redis.ResponseError):
            raise reply
        return list(reply)

    def _fetch(self, count: int) -> list[bytes | None]:
        """Up to ``count`` messages off the queue, now."""
        return list(run_together(self.broker.client, [self._fetch_call(count)])[0])

    def _fetch_call(self, count: int) -> ScriptCall:
        broker: MailopsBroker = self.broker
        keys = broker.keys
        return ScriptCall(broker.fetch_script, [
            keys.queue(self.queue_name), keys.messages(self.queue_name),
            keys.acks(broker.broker_id, self.queue_name), keys.heartbeats, broker.lines.caps,
            keys.doorbell(self.queue_name),
        ], [current_millis(), broker.broker_id, min(count, broker._max_unpack_size()),  # type: ignore[no-untyped-call]
            self.queue_name, park_score(self.queue_name, 0), FETCH_LOOK_MOST, *broker.lines.templates,
            int(not self.queue_name.endswith(".DQ"))])


#: Most queued ids one fetch looks at while parking commands of full backends (bounds its time in
#: Redis; a fetch that stopped there rings the queue's doorbell to be sent again at once).
FETCH_LOOK_MOST = 256


@dataclass(frozen=True)
class BackendLines:
    """What ``fetch.lua`` needs to park a command of a full backend: the caps hash and the names of
    a backend's in-flight and parked keys around the backend's name (workers.constants.Keys)."""

    caps: str
    templates: tuple[str, str, str, str]

    @classmethod
    def of(cls, keys: Keys) -> BackendLines:
        mark = "\x00"
        inflight, parked = keys.backend_inflight(mark).split(mark), keys.backend_parked(mark).split(mark)
        return cls(keys.backend_caps, (inflight[0], inflight[1], parked[0], parked[1]))


class MailopsBroker(RedisBroker):
    """Dramatiq's Redis broker, plus :meth:`heartbeat_and_reap` run on a fixed period."""

    #: Set by :meth:`wake_consumers`: consumers stop waiting long (the process is stopping).
    stopping = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        #: Key names in this broker's namespace (workers.constants, like every other key).
        self.keys = DramatiqKeys(self.namespace)
        # Dramatiq's own script, registered so a worker loads it as it starts (lua.load_scripts).
        source = self.scripts["dispatch"].script
        assert isinstance(source, bytes | str)
        self.scripts["dispatch"] = registered(self.client, source)
        self._reap = registered(self.client, lua_script("reap"))
        #: Dramatiq's fetch with a heartbeat that only moves forward (see WakingConsumer._wait).
        self.fetch_script = registered(self.client, lua_script("fetch"))
        self._stranded: list[tuple[str, list[str]]] = []
        #: Set by build_broker; the default (the default prefix) serves brokers built directly.
        self.lines = BackendLines.of(Keys())
        self._stranded_lock = threading.Lock()
        #: Per queue, the Redis ids of the messages this process's consumers handed out and that are
        #: not acknowledged yet (kept here, not in a consumer: Dramatiq replaces a consumer that
        #: lost its connection while worker threads still run its messages).
        self.held: collections.defaultdict[str, set[str]] = collections.defaultdict(set)
        #: Queues whose consumer lost its connection: their ack set may hold messages this process
        #: no longer has (see WakingConsumer._recover).
        self.unsure: set[str] = set()

    @property
    def consumer_class(self) -> type[WakingConsumer]:
        return WakingConsumer

    @property
    def wake_key(self) -> str:
        """List this process's idle consumers also wait on, so a stop does not wait out their waits."""
        return self.keys.wake(self.broker_id)

    def ring(self, queue: str) -> None:
        """Wake an idle consumer of ``queue`` (of any process): a message was put on it.

        Best effort: the message is already queued, so a failure here must not make the caller
        queue it again; consumers look at their queue every :data:`IDLE_WAIT_MS` anyway."""
        key = self.keys.doorbell(queue)
        pipe = self.client.pipeline(transaction=False)
        pipe.rpush(key, "1")
        pipe.ltrim(key, -DOORBELL_TOKENS, -1)
        pipe.pexpire(key, DOORBELL_TTL_MS)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            logger.debug("could not ring %s (%s); its consumers look within %d ms", queue, exc, IDLE_WAIT_MS)

    def _dispatch(self, command: str) -> Callable[..., Any]:
        """Dramatiq's calls of its dispatch script (fetch, ack, nack, enqueue, requeue), sent on
        the calling thread's own connection (workers.store.wire) instead of through redis-py's pool:
        the consumer fetches once per command when commands arrive one at a time. Same script,
        same arguments as Dramatiq's; a script error is raised as redis-py would raise it."""
        script = self.scripts["dispatch"]
        keys = [self.namespace]

        def do_dispatch(queue_name: str, *args: Any) -> Any:
            call = ScriptCall(script, keys, [
                command, current_millis(), queue_name, self.broker_id, self.heartbeat_timeout,
                self.dead_message_ttl, self._should_do_maintenance(command),
                self._max_unpack_size(),  # type: ignore[no-untyped-call]
                *args,
            ])
            return run_together(self.client, [call])[0]

        return do_dispatch

    def wake_consumers(self) -> None:
        """Before stopping: this process's consumers return from their waits now and wait only
        briefly from then on, so they notice the stop at once."""
        self.stopping = True
        pipe = self.client.pipeline(transaction=False)
        pipe.rpush(self.wake_key, *["1"] * max(1, len(self.queues)))
        pipe.pexpire(self.wake_key, 10_000)
        pipe.execute()

    def enqueue(self, message: Message[Any], *, delay: int | None = None) -> Message[Any]:
        """Dramatiq's enqueue (delayed messages coming due, tools), in mailops' message form with
        a short Redis id (:func:`~workers.queue.messages.encoded`), then ring the queue it used."""
        queue = message.queue_name
        message = message.copy(options={"redis_message_id": redis_message_id(backend_of(message))})
        if delay is not None:
            queue = dq_name(queue)
            message = message.copy(queue_name=queue, options={"eta": current_millis() + delay})
        self.emit_before("enqueue", message, delay)
        self.do_enqueue(queue, message.options["redis_message_id"], encoded(message))
        self.emit_after("enqueue", message, delay)
        self.ring(queue)
        return message

    def strand(self, queue: str, redis_message_ids: list[str]) -> None:
        """Note messages this process fetched and will not run (its consumer lost Redis); the next
        :meth:`heartbeat_and_reap` puts them back on their queue."""
        with self._stranded_lock:
            self._stranded.append((queue, redis_message_ids))

    def requeue_stranded(self) -> int:
        """Put stranded messages back on their queues (kept for the next call if Redis is still away)."""
        with self._stranded_lock:
            stranded, self._stranded = self._stranded, []
        done = 0
        try:
            while stranded:
                queue, ids = stranded[0]
                self.do_requeue(queue, *ids)
                self.ring(queue)
                stranded.pop(0)
                done += len(ids)
        finally:
            if stranded:
                with self._stranded_lock:
                    self._stranded[:0] = stranded
        return done

    def heartbeat_and_reap(self) -> int:
        """Refresh this process's heartbeat and requeue the messages of dead processes, now.

        Dead processes' unacknowledged messages go back to the *head* of their queues, so a
        crashed command runs again about ``heartbeat_timeout`` + one period after the crash,
        not after the backlog. Returns how many messages were requeued.
        """
        self.requeue_stranded()
        queues = sorted({q for q in self.queues if not q.endswith(".DQ")})
        requeued = self._reap(
            keys=[self.namespace, self.lines.caps],
            args=[current_millis(), self.broker_id, self.heartbeat_timeout, self.dead_message_ttl,
                  *self.lines.templates[:2], *queues],
        )
        return int(requeued)

    def hand_back(self) -> None:
        """Mark this process dead now, so the next reap (within a second) requeues whatever it
        still holds; used when a drain ends with commands still running."""
        self.client.zadd(self.keys.heartbeats, {self.broker_id: 0})

    def _should_do_maintenance(self, command: str) -> int:
        # Maintenance runs deterministically from heartbeat_and_reap; never at random.
        return 0


def build_broker(client: redis.Redis, settings: Settings, middleware: Sequence[Middleware], *,
                 broker_id: str | None = None) -> MailopsBroker:
    """The broker of one worker process; ``broker_id`` (its worker id) names its heartbeat and
    ack sets, so ``mailops worker --check`` can find this host's processes."""
    broker: Any = MailopsBroker(
        client=client,
        namespace=settings.keys.dramatiq_namespace,
        middleware=list(middleware),
        heartbeat_timeout=settings.heartbeat_timeout_ms,
        dead_message_ttl=7 * 24 * 3600 * 1000,
    )
    if broker_id is not None:
        broker.broker_id = broker_id
    broker.lines = BackendLines.of(settings.keys)
    return broker  # type: ignore[no-any-return]
