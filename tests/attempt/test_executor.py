"""The executor's backend slot around a panel call (workers/attempt/executor.py), against a real Redis."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from schemas.commands import validate_command
from tests.conftest import capped_limits, wait_until
from workers.attempt.executor import Executor, HeldSlot
from workers.attempt.ordering import TargetGuard
from workers.backends.base import PanelResult
from workers.backends.registry import build_backends
from workers.errors import PanelUnavailable
from workers.sandbox import SandboxServer
from workers.settings import Settings
from workers.store.lua import run_together


def test_an_answered_call_frees_its_slot_before_its_command_is_recorded(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given a backend allowing one call (its scripts loaded by an earlier call), and a slot held for a call
    limits = capped_limits(settings_for, whm, 1)
    limits.give_back("whm1", limits.take(limits.request("whm1")), "answered")
    slot = HeldSlot(limits, "whm1", limits.take(limits.request("whm1")))
    redis_client.hset(limits.keys.breaker("whm1"), "failures", 2)  # two failures before this call
    # When the panel answers
    slot.call(lambda: PanelResult())
    # Then the slot is free for the next call, and the breaker told of the answer, before the
    # turn's commit round trip is sent
    wait_until(lambda: limits.in_flight("whm1") == 0 and limits.breaker("whm1")["failures"] == "0")
    settlement = slot.settlement()
    assert list(settlement.calls(True)) == []
    # And settling the turn reads the give-back's own reply instead of sending another
    settlement.replies([])
    assert slot.ahead is not None and slot.ahead.replies() == [b"closed"]


def test_a_give_back_whose_reply_was_lost_is_sent_again(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    limits = capped_limits(settings_for, whm, 1)
    lease = limits.take(limits.request("whm1"))
    assert limits.settle_ahead("whm1", lease, None) == "closed"
    assert limits.in_flight("whm1") == 0


def test_a_give_back_redis_could_not_run_is_sent_again_when_the_command_is_recorded(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given a slot held for a call, and a Redis that has lost its scripts (a restart)
    limits = capped_limits(settings_for, whm, 1)
    slot = HeldSlot(limits, "whm1", limits.take(limits.request("whm1")))
    redis_client.script_flush()
    # When the panel answers, the give-back sent ahead finds no script and does not run
    slot.call(lambda: PanelResult())
    assert limits.in_flight("whm1") == 1
    # Then settling the turn gives the slot back (loading the script)
    slot.settlement().replies([])
    assert limits.in_flight("whm1") == 0


def test_a_failed_call_gives_its_slot_back_at_once_with_what_the_failure_tells_the_breaker(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    limits = capped_limits(settings_for, whm, 1)
    slot = HeldSlot(limits, "whm1", limits.take(limits.request("whm1")))

    def refused() -> PanelResult:
        raise PanelUnavailable("connection refused")

    with pytest.raises(PanelUnavailable):
        slot.call(refused)
    assert limits.in_flight("whm1") == 0
    assert limits.breaker("whm1")["failures"] == "1"
    assert slot.ahead is None


def test_an_attempt_that_will_not_run_and_found_the_backend_full_takes_no_slot(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given a backend whose one slot is held, and a command whose first step found it full
    limits = capped_limits(settings_for, whm, 1)
    holder = limits.take(limits.request("whm1"))
    executor = Executor(build_backends(limits.settings.backends), limits=limits,
                        ordering=TargetGuard(limits.client, limits.settings.keys))
    command = validate_command({"id": "line-1", "command": "suspend_outgoing", "backend": "whm1",
                                "args": {"user": "example"}, "producer": "abuse"})
    start = executor.start_calls(command, "1-0")
    start.received(run_together(limits.client, start.calls))
    assert start.slot is not None and start.slot_reply[0] == b"full"
    # When the attempt is abandoned (it will not run), then the holder gives its slot back
    executor.abandon(start)
    limits.give_back("whm1", holder, "answered")
    # Then nothing of it is parked and no slot is left to it: the backend is free
    assert limits.parked("whm1") == 0
    assert limits.in_flight("whm1") == 0
    executor.close()
