"""Per-target ordering: stale commands never reach the panel, one command per target+aspect in flight.

Every command gets an :class:`OrderStamp` ``(issued_at, seq, admission entry, id)``, compared in
that order:

1. ``issued_at`` of the producer (milliseconds), **clamped** to the command's admission time plus
   ``max_skew_ms`` (default 5 minutes). The admission time is the Redis stream entry id, i.e. the
   Redis server's clock, so the clamp is the same on every retry. A producer whose clock runs
   ahead therefore cannot pin a target for longer than the skew: its command is ordered as if
   issued at admission + skew. Commands are clamped, not rejected, because a rejected suspend
   is a lost decision.
2. ``seq``, the producer's own sequence number (absent = 0): breaks ties of one producer.
3. The commands-stream entry id (admission order): breaks every remaining tie deterministically.
4. The command id, for commands that were not admitted through the stream (tests, tools).

A target is ``(backend, target, aspect)``: the same account name on two servers is two targets.
The per target+aspect record (:meth:`Keys.order`) holds the last applied stamp and a lease.
:meth:`TargetGuard.take` atomically refuses a stale command (:class:`Superseded`) or a busy
target (:class:`TargetBusy`) and otherwise takes the lease; :meth:`TargetGuard.commit_call` stores
the stamp together with the hold change and frees the lease; :meth:`TargetGuard.release` frees it
after a failed call without committing. For suspend/unsuspend the "last applied" register is kept
per hold reason (see :mod:`workers.attempt.holds`): a billing unsuspend must not make an older abuse
suspend stale, since applying the two in issue order would still leave the abuse hold on.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import redis

from schemas.commands import Command
from schemas.fields import SECRET_FIELDS
from workers.attempt.holds import HoldPlan, plan_for
from workers.backends.base import PanelResult
from workers.constants import Keys
from workers.errors import Repeat, Superseded, TargetBusy
from workers.store.lua import ScriptCall, lua_script, registered
from workers.store.wire import as_text

#: Milliseconds a producer's ``issued_at`` may lie ahead of admission before it is clamped.
DEFAULT_MAX_SKEW_MS = 5 * 60 * 1000
#: Milliseconds a target+aspect lease lives if its holder dies (longer than any panel call).
DEFAULT_LEASE_TTL_MS = 60_000
#: Base milliseconds a command waits before trying a busy target again (jitter is added).
BUSY_DELAY_MS = 200

@dataclass(frozen=True, order=True)
class OrderStamp:
    """Where a command stands in its target+aspect's order; compares as documented above."""

    issued_ms: int
    seq: int
    entry_ms: int
    entry_seq: int
    command_id: str

    def encode(self) -> str:
        return f"{self.issued_ms}|{self.seq}|{self.entry_ms}|{self.entry_seq}|{self.command_id}"

    @classmethod
    def decode(cls, text: str) -> OrderStamp:
        a, b, c, d, command_id = text.split("|", 4)
        return cls(int(a), int(b), int(c), int(d), command_id)


def stamp_for(command: Command, entry: str | None, *, max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
              now_ms: int | None = None) -> OrderStamp:
    """The command's stamp; ``entry`` is its commands-stream entry id (``<ms>-<n>``) if admitted."""
    issued = int(command.issued_at.timestamp() * 1000)
    if entry:
        ms_text, _, n_text = entry.partition("-")
        entry_ms, entry_seq = int(ms_text), int(n_text or 0)
        admitted = entry_ms
    else:
        entry_ms, entry_seq = 0, 0
        admitted = now_ms if now_ms is not None else int(time.time() * 1000)
    return OrderStamp(min(issued, admitted + max_skew_ms), command.seq or 0, entry_ms, entry_seq, command.id)


def desired_state(command: Command) -> str:
    """What the command asks the panel for, and who asks, as a short fingerprint: its name, arguments
    (sealed passwords seal deterministically, so equal passwords compare equal) and producer. Only
    the same sender's re-sends collapse: an operator's or reconcile's command for the same state
    exists because the panel drifted, and must reach it."""
    digest = hashlib.sha256(orjson.dumps([command.command, command.args, command.producer],
                                         option=orjson.OPT_SORT_KEYS))
    return digest.hexdigest()[:24]


def register_for(command: Command) -> str:
    """The order record field whose stamp this command must not be older than."""
    plan = plan_for(command)
    return f"last:{plan.reason}" if plan is not None else "last"


@dataclass(frozen=True)
class TurnRequest:
    """A target+aspect turn asked for: the take call (sent alone, or with other calls in one round
    trip) and what the turn will be if it is granted."""

    command: Command
    stamp: OrderStamp
    token: str
    order_key: str
    holds_key: str
    register: str
    call: ScriptCall


@dataclass(frozen=True)
class Turn(TurnRequest):
    """A granted turn: the target+aspect lease is taken and this command may call the panel now."""

    #: Reasons holding this target+aspect when the turn was taken.
    holding: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settlement:
    """Calls sent together with the ordering commit, in one round trip, once a turn ends well:
    ``calls(called)`` is given whether the panel was called; ``replies`` receives their replies."""

    calls: Callable[[bool], Sequence[ScriptCall]]
    replies: Callable[[list[Any]], None] = lambda replies: None


class TargetGuard:
    """The ordering gate around a panel call, shared by every worker through Redis."""

    def __init__(self, client: redis.Redis, keys: Keys, *, max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
                 lease_ttl_ms: int = DEFAULT_LEASE_TTL_MS, repeat_window_ms: int = 0) -> None:
        self.client = client
        self.keys = keys
        self.max_skew_ms = max_skew_ms
        self.lease_ttl_ms = lease_ttl_ms
        #: A command asking for the state a call of the same producer set after the command was
        #: admitted (same target, aspect and hold reason; at most this long ago) ends ``succeeded``,
        #: ``already``, without a call (:class:`Repeat`).
        self.repeat_window_ms = repeat_window_ms
        self._take = registered(client, lua_script("order_take"))
        self._commit = registered(client, lua_script("order_commit"))
        self._release = registered(client, lua_script("order_release"))

    def request(self, command: Command, entry: str | None = None, *, takeover: bool = False) -> TurnRequest:
        """The take call for the command's target+aspect turn (see :meth:`take`)."""
        stamp = stamp_for(command, entry, max_skew_ms=self.max_skew_ms)
        # A target's identity includes its backend (ingest's routing gate has named it by now):
        # the same account name on two servers is two targets.
        backend, target, aspect = command.backend or "", command.target, command.spec.aspect
        order_key, holds_key = self.keys.order(backend, target, aspect), self.keys.holds(backend, target, aspect)
        register = register_for(command)
        token = f"{command.id}:{random.getrandbits(48):012x}"  # unique, not secret (see messages.redis_message_id)
        call = ScriptCall(self._take, [order_key, holds_key],
                          [token, stamp.encode(), register, self.lease_ttl_ms, int(takeover), desired_state(command),
                           self.repeat_window_ms])
        return TurnRequest(command, stamp, token, order_key, holds_key, register, call)

    def take(self, command: Command, entry: str | None = None, *, takeover: bool = False) -> Turn:
        """Take the command's target+aspect turn; raise :class:`Superseded` or :class:`TargetBusy`."""
        request = self.request(command, entry, takeover=takeover)
        return self.turn_from(request, request.call.run())

    def turn_from(self, request: TurnRequest, reply: Any) -> Turn:
        """The :class:`Turn` a reply to ``request`` granted; raise :class:`Superseded` or :class:`TargetBusy`."""
        verdict, detail, *rest = reply
        verdict, detail = as_text(verdict), as_text(detail)
        command, target, aspect = request.command, request.command.target, request.command.spec.aspect
        if verdict == "busy":
            raise TargetBusy(BUSY_DELAY_MS + random.randint(0, BUSY_DELAY_MS),
                             f"another command for {aspect} of {target} on {command.backend} is in flight")
        if verdict == "repeat":
            raise Repeat(detail, f"{detail} set {aspect} of {target} on {command.backend} to the same state "
                                 f"within the last {self.repeat_window_ms // 1000} s")
        if verdict == "superseded":
            newer = OrderStamp.decode(detail)
            raise Superseded(
                f"a newer command ({newer.command_id}, issued {_iso(newer.issued_ms)}) for {aspect} of {target} "
                f"on {command.backend} was already applied"
            )
        holding = tuple(sorted(as_text(r) for r in rest[0]))
        return Turn(command, request.stamp, request.token, request.order_key, request.holds_key, request.register,
                    request.call, holding)

    @staticmethod
    def granted(reply: Any) -> bool:
        """Whether a take reply granted the turn."""
        return as_text(reply[0]) == "ok"

    @staticmethod
    def held_by_own_command(request: TurnRequest, reply: Any) -> bool:
        """Whether a ``busy`` reply names a lease of an earlier attempt of the same command
        (tokens are ``<command id>:<12 hex>``)."""
        return as_text(reply[0]) == "busy" and as_text(reply[1])[:-13] == request.command.id

    @staticmethod
    def needs_call(turn: Turn, plan: HoldPlan | None = None) -> bool:
        """Whether the turn's command reaches the panel (an unsuspend under other holds does not);
        ``plan`` is the command's hold plan if the caller has it already."""
        plan = plan if plan is not None else plan_for(turn.command)
        return plan is None or plan.calls_panel(plan.after(turn.holding))

    def commit_call(self, turn: Turn, plan: HoldPlan | None, *, called: bool = True) -> ScriptCall:
        """The call that stores the stamp and the hold change and frees the lease (and, after a
        panel call, the state it set, for :class:`Repeat`)."""
        op, reason, record = ("none", "", b"")
        if plan is not None:
            op, reason = plan.op, plan.reason
            record = orjson.dumps(plan.record(turn.command))
        # What reconcile needs to read the target again, never a secret (not even sealed)
        args = orjson.dumps({k: v for k, v in turn.command.args.items() if k not in SECRET_FIELDS})
        applied = f"{desired_state(turn.command)}|{int(time.time() * 1000)}|{turn.command.id}" if called else ""
        return ScriptCall(self._commit, [turn.order_key, turn.holds_key, self.keys.holds_index],
                          [turn.token, turn.stamp.encode(), turn.register, op, reason, record,
                           turn.command.backend or "", args, applied, turn.command.command])

    def release_call(self, token: str, order_key: str) -> ScriptCall:
        """The call that frees a lease if ``token`` still holds it; nothing is committed."""
        return ScriptCall(self._release, [order_key], [token])

    def release(self, turn: Turn) -> None:
        """Free the lease after a failed call; nothing is committed."""
        self.release_call(turn.token, turn.order_key).run()

    def complete_later(self, turn: Turn, call: Callable[[Command], PanelResult], *,
                       settle: Settlement | None = None) -> Pending:
        """Once the turn is taken: apply the hold logic and make the panel call if needed
        (releasing the turn if the call fails); the commit (and ``settle``'s calls) are left to
        the caller, to send together with its own next step (see :class:`Pending`)."""
        command = turn.command
        plan = plan_for(command)
        called = self.needs_call(turn, plan)
        try:
            if called:
                result = call(command)
            else:
                result = PanelResult(already=False, message="kept suspended: other holds remain")
        except BaseException:
            self.release(turn)
            raise
        extra = list(settle.calls(called)) if settle is not None else []
        return Pending(turn, plan, called, result, [self.commit_call(turn, plan, called=called), *extra], settle)


@dataclass(frozen=True)
class Pending:
    """A finished turn whose commit is still to be sent: :attr:`calls` (the commit first) go in
    one round trip, and :meth:`result_from` turns their replies into the command's result.

    :attr:`expected` is that result if the commit applies as planned; :meth:`guard` states the
    condition under which it does, so a step sent in the same round trip can check it in Redis.
    """

    turn: Turn
    plan: HoldPlan | None
    called: bool
    result: PanelResult
    calls: list[ScriptCall]
    settle: Settlement | None

    def result_from(self, replies: list[Any]) -> PanelResult:
        """The command's result, given the replies to :attr:`calls`."""
        if self.settle is not None:
            self.settle.replies(replies[1:len(self.calls)])
        verdict, holding = _committed(replies[0])
        return self._described(holding, stale=verdict == "stale")

    @property
    def expected(self) -> PanelResult:
        """The result if the commit applies this command's hold change to the holds the turn saw."""
        return self._described(self.plan.after(self.turn.holding) if self.plan else (), stale=False)

    def guard(self) -> CommitGuard | None:
        """What must hold in Redis after the commit for :attr:`expected` to be the result (None:
        the result does not depend on the commit)."""
        if self.plan is None:
            return None
        return CommitGuard(self.turn.order_key, self.turn.register, self.turn.stamp.encode(), self.turn.holds_key,
                           self.plan.after(self.turn.holding))

    def _described(self, holding: tuple[str, ...], *, stale: bool) -> PanelResult:
        result, plan = self.result, self.plan
        if plan is None:
            return result
        details: dict[str, Any] = dict(result.details)
        details["holds"] = plan.describe(self.turn.holding, holding, called=self.called)
        if stale:
            details["holds"]["note"] = "lease expired during the call; a newer command had already committed"
        return PanelResult(already=result.already, message=result.message, details=details, verified=result.verified)


@dataclass(frozen=True)
class CommitGuard:
    """The state a committed turn leaves: the register holds the command's stamp and the holds
    hash holds exactly ``holding`` (checked by ``finish.lua`` before it publishes)."""

    order_key: str
    register: str
    stamp: str
    holds_key: str
    holding: tuple[str, ...]


def _committed(reply: Any) -> tuple[str, tuple[str, ...]]:
    verdict, holding = reply
    return as_text(verdict), tuple(sorted(as_text(r) for r in holding))



def _iso(ms: int) -> str:
    from datetime import UTC

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")
