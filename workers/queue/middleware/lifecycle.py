"""Lifecycle middleware: attempts, retries, dead letters and the terminal event of every command.

Before an actor runs, the attempt is counted in the command record (so a crash counts as an
attempt) and the command is read from the message; a command that already ended, or a stale copy of a retried
message, is skipped. After it runs, exactly one of these happens:

* it returned a :class:`~workers.backends.base.PanelResult` -> ``succeeded`` (``already`` when no
  change was needed);
* it raised a permanent error (:class:`~workers.errors.PanelRefused`, ``CommandError``) ->
  ``failed``;
* it raised :class:`~workers.errors.Defer` (backend down, caps full, target busy) -> ``waiting``:
  re-run later with the next generation *without* counting the attempt; only a wait longer
  than ``outage_tolerance_s`` for a down backend dead-letters;
* it raised anything else -> ``retrying`` with a backoff from the command's
  :class:`~workers.attempt.retry_policy.RetryPolicy`, or ``dead_lettered`` once attempts or age run out.

A :class:`~workers.errors.PanelTimeout` (sent, no answer) is retried like any transient error:
commands are desired-state, so the retry finds the change already made and the panel's "already
so" answer counts as success. The next run, the ``retrying``/``waiting`` event, the record and
the attempt's history entry are written by one Lua script (``retry.lua``).

Terminal events are written by one Lua script together with the record, so each command gets
exactly one even if the worker dies at any point.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, SkipMessage

from schemas.commands import Command
from schemas.events import HELD, ErrorInfo, Event, EventStatus
from workers.attempt.executor import Start
from workers.attempt.limits import park_score
from workers.attempt.ordering import Pending
from workers.backends.base import PanelResult
from workers.errors import (
    CommandError,
    Defer,
    MailopsError,
    NotApplied,
    PanelRefused,
    PanelUnavailable,
    Superseded,
)
from workers.queue.broker import ACKED_OPTION, MailopsBroker
from workers.queue.messages import COMMAND_OPTION, GENERATION_OPTION, command_of, entry_of
from workers.queue.middleware.execution import AttemptObserver, Execution, thread_state
from workers.store.command_store import CommandStore, Parking, now_ms
from workers.store.lua import note_wait, run_together, transient_refusal
from workers.store.wire import own_connection

logger = logging.getLogger(__name__)

#: Message option: epoch ms when the command started waiting for a down backend (cleared on retry).
WAITING_SINCE_OPTION = "mailops_waiting_since"
#: Message option: how many times in a row the command was deferred (spaces out its waits).
WAITS_OPTION = "mailops_waits"
#: Longest single wait of a deferred command, in milliseconds.
MAX_WAIT_MS = 30_000


@dataclass
class _Begun:
    """How far :meth:`Lifecycle.before_process_message` got (for :meth:`Lifecycle._end_inside`)."""

    command: Command | None = None
    attempt: int | None = None
    start: Start | None = None


class Starter(Protocol):
    """What an attempt needs besides its count (:class:`~workers.attempt.executor.Executor`)."""

    def start_calls(self, command: Command, entry: str | None) -> Start: ...

    def abandon(self, start: Start) -> None: ...


class Lifecycle(Middleware):
    """Counts attempts, decides retries and publishes every command's events."""

    def __init__(self, store: CommandStore, worker_id: str, *, starter: Starter | None = None,
                 observers: Sequence[AttemptObserver] = ()) -> None:
        self.store = store
        self.worker_id = worker_id
        #: Asks for what an attempt needs (its turn and backend slot) in the attempt count's round trip.
        self.starter = starter
        #: Told as each attempt starts and ends (metrics, Sentry).
        self.observers = tuple(observers)

    def after_worker_thread_boot(self, broker: dramatiq.Broker, thread: Any) -> None:
        """Open the thread's own Redis connection (:mod:`workers.store.wire`) as it starts, so the first
        command it runs after a (re)start does not wait for a connection and its handshake
        (measured: 12–29 ms for each thread's first round trip, with eight threads starting)."""
        try:
            own_connection(self.store.client.connection_pool).connect()
        except redis.RedisError as exc:
            logger.debug("worker thread could not connect yet (%s); its first command connects", exc)

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        thread_state.message = message
        thread_state.execution = None
        assert isinstance(broker, MailopsBroker)
        thread_state.ack = (broker.keys.acks(broker.broker_id, message.queue_name), broker.keys.messages(message.queue_name),
                      str(message.options.get("redis_message_id", "")))
        # Dramatiq logs and swallows what a middleware's before-hook raises, runs the actor anyway
        # and acknowledges the message: whatever fails here ends the command instead (_end_inside).
        begun = _Begun()
        try:
            self._begin(message, begun)
        except SkipMessage:
            raise
        except Exception as exc:
            self._end_inside("before", message, exc, begun.command, begun.attempt, begun.start)
            raise SkipMessage() from None

    def _begin(self, message: MessageProxy, begun: _Begun) -> None:
        command_id = str(message.args[0])
        generation = int(message.options.get(GENERATION_OPTION, 1))
        command = command_of(message) if COMMAND_OPTION in message.options else self.store.stored_command(command_id)
        begun.command = command
        entry = entry_of(message)
        # One round trip: the attempt count, the target's turn and a backend slot (see Executor).
        start = self.starter.start_calls(command, entry) if self.starter is not None else Start()
        begin = self.store.begin_call(command_id, self.worker_id, generation)
        replies = _retry_redis(lambda: run_together(self.store.client, [begin, *start.calls]))
        attempt = CommandStore.attempt_from(replies[0])
        start.received(replies[1:])
        begun.start, begun.attempt = start, attempt.number
        if not attempt.should_run:
            logger.debug("skipping %s: %s", command_id, attempt.state)
            self._abandon(start)
            raise SkipMessage()
        policy = command.spec.retry
        if attempt.number > policy.max_attempts:
            self._abandon(start)
            begun.start = None
            error = ErrorInfo(kind="attempts_exhausted",
                              message=f"{attempt.number - 1} attempts ended without a result (worker crashes count)")
            self._finish(command, "dead_lettered", attempt.number - 1, error=error, details={"exhausted": "attempts"})
            raise SkipMessage()
        execution = Execution(command, attempt.number, time.monotonic(), now_ms(), entry=entry, start=start,
                              alone=attempt.alone, after_loss=attempt.lost or attempt.alone)
        thread_state.execution = execution
        for observer in self.observers:
            observer.attempt_started(execution)

    def _end_inside(self, step: str, message: MessageProxy, exc: BaseException, command: Command | None,
                    attempt: int | None, start: Start | None) -> None:
        """End a command whose lifecycle step failed unexpectedly (a bug, a command that no longer
        parses, Redis refusing for good): ``dead_lettered`` with ``error.kind = internal``, so it is
        listed by ``mailops dlq``; the message is acknowledged only with that terminal event."""
        command_id = str(message.args[0])
        logger.error("command %s: %s in the lifecycle (%s the panel call); dead-lettering it",
                     command_id, _describe(exc), step, exc_info=exc)
        if start is not None and start.sent:
            try:
                self._abandon(start)
            except Exception as abandon_exc:  # the turn and the slot lease run out on their own
                logger.warning("command %s: could not give back its turn and slot (%s)", command_id,
                               type(abandon_exc).__name__)
        raw = message.options.get(COMMAND_OPTION)
        fields = raw if isinstance(raw, dict) else {}
        event = Event(
            id=command_id, status="dead_lettered", terminal=True, attempt=attempt,
            command=command.command if command is not None else _text_or_none(fields.get("command")),
            backend=command.backend if command is not None else _text_or_none(fields.get("backend")),
            producer=command.producer if command is not None else _text_or_none(fields.get("producer")),
            batch=command.batch if command is not None else None,
            error=ErrorInfo(kind="internal", message=f"{_describe(exc)} ({step} the panel call)"),
            details={"step": step},
        )
        if command is not None:
            self._ended("dead_lettered", command)
        ack: tuple[str, str, str] | None = getattr(thread_state, "ack", None)
        try:
            _retry_redis(lambda: self.store.finish(event, reply_to=command.reply_to if command is not None else None,
                                                   ack=ack, command=command))
        except Exception as finish_exc:
            logger.critical("command %s: its terminal event could not be written (%s); its message stays in "
                            "this worker's ack set (put back when the worker restarts or Redis reconnects)",
                            command_id, _describe(finish_exc))
        # Acknowledged by finish.lua, or left unacknowledged: Dramatiq's ack must not run either way.
        message.options[ACKED_OPTION] = True

    def _abandon(self, start: Start) -> None:
        starter = self.starter
        if starter is not None:
            _retry_redis(lambda: starter.abandon(start))

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        thread_state.execution = thread_state.ack = thread_state.message = None

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        execution: Execution | None = getattr(thread_state, "execution", None)
        thread_state.execution, thread_state.ending = None, execution
        try:
            if execution is not None:
                self._conclude(broker, message, execution, exception)
            else:  # an actor run without an attempt (cannot happen: before ends or skips it)
                self._end_inside("after", message, exception or RuntimeError("no attempt was begun"), None, None, None)
        except Exception as exc:
            # Dramatiq would log this and acknowledge the message: end the command instead.
            assert execution is not None
            self._end_inside("after", message, exc, execution.command, execution.attempt, execution.start)
        finally:
            thread_state.ack = thread_state.message = thread_state.ending = None

    def _ended(self, status: str, command: Command) -> None:
        execution: Execution | None = getattr(thread_state, "ending", None)
        for observer in self.observers:
            observer.attempt_ended(status, command, execution)

    def _conclude(
        self, broker: dramatiq.Broker, message: MessageProxy, execution: Execution, exception: BaseException | None
    ) -> None:
        command, attempt = execution.command, execution.attempt
        exception = exception or execution.error
        if exception is None:
            outcome = execution.result or PanelResult()
            status: EventStatus = HELD if (outcome.details.get("holds") or {}).get("panel_called") is False else "succeeded"
            self._finish(command, status, attempt, already=outcome.already, details=outcome.details,
                         history=self._entry(execution, status), pending=execution.pending, verified=outcome.verified)
            return
        if isinstance(exception, Defer):
            self._defer(broker, message, execution, exception)
            return
        error = ErrorInfo(kind=getattr(exception, "kind", "internal"), message=_describe(exception))
        if isinstance(exception, Superseded):  # a newer command for its target+aspect was applied
            self._finish(command, "superseded", attempt, error=error, history=self._entry(execution, "superseded", error))
            return
        if isinstance(exception, PanelRefused | CommandError):
            self._finish(command, "failed", attempt, error=error, history=self._entry(execution, "failed", error))
            return
        policy = command.spec.retry
        age = (datetime.now(UTC) - command.issued_at).total_seconds()
        if attempt >= policy.max_attempts or age >= policy.max_age_s:
            why = "attempts" if attempt >= policy.max_attempts else "age"
            self._finish(command, "dead_lettered", attempt, error=error, details={"exhausted": why, **_read_of(exception)},
                         history=self._entry(execution, "dead_lettered", error))
            return
        retry_after = exception.retry_after if isinstance(exception, PanelUnavailable) else None
        delay = policy.delay_ms(attempt, retry_after_s=retry_after)
        generation = int(message.options.get(GENERATION_OPTION, 1)) + 1
        copy = message.copy(options={GENERATION_OPTION: generation, WAITING_SINCE_OPTION: None, WAITS_OPTION: 0})
        event = Event(
            id=command.id, command=command.command, backend=command.backend, target=command.target, producer=command.producer,
            status="retrying", attempt=attempt, error=error, batch=command.batch,
            next_attempt_at=datetime.now(UTC) + timedelta(milliseconds=delay), details=_read_of(exception),
        )
        entry = self._entry(execution, "retrying", error)
        self._ended("retrying", command)
        _retry_redis(lambda: self.store.schedule_retry(
            event, generation=generation, reply_to=command.reply_to, message=copy, delay_ms=delay, attempt=entry))

    def _defer(self, broker: dramatiq.Broker, message: MessageProxy, execution: Execution, signal: Defer) -> None:
        """Run the command again later without counting this attempt (it never reached the panel,
        or the backend is down), unless it has waited for a down backend beyond the tolerance."""
        command = execution.command
        error = ErrorInfo(kind=signal.reason, message=str(signal))
        since = message.options.get(WAITING_SINCE_OPTION) or now_ms()
        waited_s = (now_ms() - int(since)) / 1000
        tolerance = self.store.settings.outage_tolerance_s
        if signal.reason == "backend_down" and waited_s > tolerance:
            self._finish(command, "dead_lettered", execution.attempt, error=error,
                         details={"exhausted": "outage_tolerance", "waited_s": round(waited_s, 1)},
                         history=self._entry(execution, "dead_lettered", error))
            return
        waits = int(message.options.get(WAITS_OPTION) or 0) + 1
        spaced = min(MAX_WAIT_MS, 250 * 2 ** min(waits, 10))
        delay = max(signal.delay_ms, spaced if signal.reason == "backend_down" else signal.delay_ms)
        generation = int(message.options.get(GENERATION_OPTION, 1)) + 1
        copy = message.copy(options={GENERATION_OPTION: generation, WAITING_SINCE_OPTION: int(since), WAITS_OPTION: waits})
        event = Event(
            id=command.id, command=command.command, backend=command.backend, target=command.target, producer=command.producer,
            status="waiting", error=error, batch=command.batch,
            next_attempt_at=datetime.now(UTC) + timedelta(milliseconds=delay),
            details={"reason": signal.reason, "waited_s": round(waited_s, 1)},
        )
        entry = self._entry(execution, "waiting", error)
        self._ended("waiting", command)
        parked = None
        if signal.parked_on is not None:
            # In its backend's line by priority, then by arrival (its stream entry, else its first wait).
            arrival = int(execution.entry.split("-")[0]) if execution.entry else int(since)
            parked = Parking(signal.parked_on, park_score(message.queue_name, arrival))
        _retry_redis(lambda: self.store.schedule_retry(
            event, generation=generation, reply_to=command.reply_to, message=copy, delay_ms=delay,
            attempt=entry, uncount=True, publish=_worth_publishing(waits), parked=parked))

    def _entry(self, execution: Execution, result: str, error: ErrorInfo | None = None) -> dict[str, Any]:
        """One attempt for the command's history (never its args: they may hold sealed secrets)."""
        entry: dict[str, Any] = {
            "attempt": execution.attempt, "start": execution.started_ms, "end": now_ms(),
            "worker": self.worker_id, "result": result,
        }
        if error is not None:
            entry["error"] = error.model_dump(exclude_none=True)
        return entry

    def _finish(self, command: Command, status: EventStatus, attempt: int, *, already: bool | None = None,
                error: ErrorInfo | None = None, details: dict[str, Any] | None = None,
                history: dict[str, Any] | None = None, pending: Pending | None = None,
                verified: bool | None = None) -> None:
        """Publish the terminal event (with ``pending``, in the round trip of the turn's commit)."""
        event = Event(
            id=command.id, command=command.command, backend=command.backend, target=command.target, producer=command.producer,
            status=status,
            terminal=True, attempt=attempt, already=already, verified=verified, error=error, batch=command.batch,
            details=details or {},
        )
        ack: tuple[str, str, str] | None = getattr(thread_state, "ack", None)
        if pending is None:
            _retry_redis(lambda: self.store.finish(event, reply_to=command.reply_to, attempt=history, ack=ack,
                                                   command=command))
        else:
            replies, ended = _retry_redis(lambda: self.store.finish_after(
                pending.calls, event, reply_to=command.reply_to, attempt=history, ack=ack, guard=pending.guard()))
            result = pending.result_from(replies)
            if ended < 0:
                # A newer command committed between this commit and the event: say what happened.
                self._finish(command, status, attempt, already=result.already, details=result.details,
                             history=history, verified=result.verified)
                return
        if ack is not None:
            # finish.lua acknowledged the message; Dramatiq's own ack becomes a no-op.
            thread_state.message.options[ACKED_OPTION] = True
        self._ended(status, command)


def _read_of(exception: BaseException) -> dict[str, Any]:
    """``details.read`` of a change the panel answered but does not show (:class:`NotApplied`)."""
    return {"read": exception.read} if isinstance(exception, NotApplied) else {}


def _worth_publishing(waits: int) -> bool:
    """Publish the 1st, 2nd, 4th, 8th, … ``waiting`` event of a streak: a command waiting out an
    hour-long outage says so about a dozen times, not on every re-check."""
    return waits & (waits - 1) == 0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MailopsError):
        return str(exc)
    # Unexpected exceptions: name the type only; their text may carry request data.
    return f"unexpected {type(exc).__name__} in the worker"


def _retry_redis(fn: Any, *, deadline_s: float = 3600.0) -> Any:
    """Run a Redis operation, waiting out connection loss (Redis restarts, failovers) and
    refusals that pass (out of memory, loading...), with backoff."""
    delay, start = 0.05, time.monotonic()
    while True:
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
            if isinstance(exc, redis.ResponseError) and not transient_refusal(exc):
                raise
            if time.monotonic() - start > deadline_s:
                raise
            note_wait(exc)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
