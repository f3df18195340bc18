"""Ordering: stamps, the target+aspect lease, and the property over random interleavings.

The property test drives :class:`TargetGuard` directly (take, then complete) with a small in-test
scheduler standing in for many worker threads, against the real Redis and a real WHM sandbox
over HTTP with injected transient faults. Each hypothesis example (a set of commands) is run
under ``SCHEDULES_PER_EXAMPLE`` different random schedules; the test asserts that at least
1,000 interleavings ran in total.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.commands import Command, validate_command
from schemas.events import Event
from tests.clock import SESSION_START
from tests.conftest import add_command, read_events, wait_for_terminal
from workers.attempt.holds import holds_of, plan_for
from workers.attempt.ordering import OrderStamp, TargetGuard, Turn, stamp_for
from workers.backends.base import Backend, PanelResult
from workers.backends.registry import build_backends
from workers.errors import PanelError, Superseded, TargetBusy
from workers.runtime import Runtime
from workers.sandbox import SandboxServer
from workers.sandbox.server import Faults
from workers.sandbox.whm import WhmSandbox
from workers.settings import Settings
from workers.store.lua import run_together

T0 = SESSION_START
TARGETS = ("alpha", "beta")
REASONS = ("abuse", "billing", "manual")
SCHEDULES_PER_EXAMPLE = 4


def commit(guard: TargetGuard, turn: Turn) -> tuple[str, tuple[str, ...]]:
    """Commit a turn on its own (a worker sends the commit with its terminal step): (verdict, reasons holding)."""
    verdict, holding = guard.commit_call(turn, plan_for(turn.command)).run()
    return verdict.decode(), tuple(sorted(r.decode() for r in holding))


def complete(guard: TargetGuard, turn: Turn, call: Callable[[Command], PanelResult]) -> PanelResult:
    """Apply a taken turn and commit it in its own round trip (a worker adds its terminal step)."""
    pending = guard.complete_later(turn, call)
    return pending.result_from(run_together(guard.client, pending.calls))
EXAMPLES = 250


def command(name: str, user: str, *, at: datetime, reason: str | None = None, producer: str = "abuse-detector",
            seq: int | None = None, cid: str | None = None) -> Command:
    body = {"id": cid or f"{name}-{user}-{reason}-{at.timestamp():.0f}-{seq}", "command": name, "backend": "whm1",
            "args": {"user": user}, "producer": producer, "issued_at": at.isoformat(), "reason": reason, "seq": seq}
    return validate_command({k: v for k, v in body.items() if v is not None})


def test_stamps_order_by_issued_at_then_seq_then_admission_entry() -> None:
    # given: commands issued at the same minute, with and without a producer sequence
    ms = int(T0.timestamp() * 1000)
    a = stamp_for(command("suspend_outgoing", "alpha", at=T0, seq=1), f"{ms + 5000}-0")
    b = stamp_for(command("suspend_outgoing", "alpha", at=T0, seq=2), f"{ms + 4000}-0")
    c = stamp_for(command("suspend_outgoing", "alpha", at=T0, seq=2), f"{ms + 4000}-1")
    d = stamp_for(command("suspend_outgoing", "alpha", at=T0 + timedelta(seconds=1)), f"{ms + 1000}-0")
    # then: seq beats admission order, admission order breaks the last tie, issued_at beats both
    assert a < b < c < d
    assert OrderStamp.decode(c.encode()) == c


def test_an_issued_at_far_in_the_future_is_clamped_to_admission_plus_the_skew() -> None:
    # given: a producer whose clock runs an hour ahead, admitted at T0
    admitted_ms = int(T0.timestamp() * 1000)
    ahead = command("suspend_outgoing", "alpha", at=T0 + timedelta(hours=1))
    # when: it is stamped with a 5-minute skew allowance
    stamp = stamp_for(ahead, f"{admitted_ms}-0", max_skew_ms=300_000)
    # then: it orders as if issued 5 minutes after admission, so a command issued 6 minutes later wins
    assert stamp.issued_ms == admitted_ms + 300_000
    later = stamp_for(command("unsuspend_outgoing", "alpha", at=T0 + timedelta(minutes=6)), f"{admitted_ms + 360_000}-0")
    assert stamp < later


def test_a_second_command_for_the_same_target_and_aspect_waits_while_another_target_proceeds(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], whm_app: SandboxServer,
) -> None:
    # given: a suspend for alpha holding its turn
    guard = TargetGuard(redis_client, settings_for({"whm1": ("whm", whm_app)}).keys)
    first = guard.take(command("suspend_outgoing", "alpha", at=T0), "1-0")
    # when: a newer command for alpha and one for beta ask for their turn
    with pytest.raises(TargetBusy):
        guard.take(command("unsuspend_outgoing", "alpha", at=T0 + timedelta(minutes=1)), "2-0")
    other = guard.take(command("suspend_outgoing", "beta", at=T0), "3-0")
    # then: alpha's second command may go once the first released its turn
    guard.release(first)
    guard.release(other)
    assert guard.take(command("unsuspend_outgoing", "alpha", at=T0 + timedelta(minutes=1)), "2-0").register == "last:abuse-detector"


def test_a_dead_holders_lease_expires_and_its_late_commit_cannot_overwrite_a_newer_decision(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], whm_app: SandboxServer,
) -> None:
    # given: a worker took alpha's turn for a suspend with a 50 ms lease and then stalled
    keys = settings_for({"whm1": ("whm", whm_app)}).keys
    guard = TargetGuard(redis_client, keys, lease_ttl_ms=50)
    stalled = guard.take(command("suspend_outgoing", "alpha", at=T0, reason="abuse"), "1-0")
    time.sleep(0.2)
    # when: a newer unsuspend of the same reason takes the expired turn and commits, then the stalled one commits
    newer = guard.take(command("unsuspend_outgoing", "alpha", at=T0 + timedelta(minutes=1), reason="abuse"), "2-0")
    assert commit(guard, newer) == ("committed", ())
    verdict = commit(guard, stalled)
    # then: the late commit is refused and no abuse hold comes back
    assert verdict == ("stale", ())
    assert holds_of(redis_client, keys, "whm1", "alpha", "outgoing") == {}


@pytest.fixture
def whm_app() -> Iterator[SandboxServer]:
    app = WhmSandbox(token="sandbox-whm-token")
    for user in TARGETS:
        app.add_account(user)
    with SandboxServer(app) as server:
        yield server


@dataclass
class Delivery:
    index: int
    turn: Turn | None = None


@dataclass(frozen=True)
class Spec:
    target: str
    suspend: bool
    reason: str
    minute: int
    seq: int | None


specs = st.lists(
    st.builds(Spec, st.sampled_from(TARGETS), st.booleans(), st.sampled_from(REASONS), st.integers(0, 3),
              st.one_of(st.none(), st.integers(0, 2))),
    min_size=2, max_size=7,
)


@dataclass
class Harness:
    """The real Redis, the real sandbox over HTTP, and the WHM backend calling it."""

    client: redis.Redis
    settings: Settings
    server: SandboxServer
    backend: Backend

    @property
    def app(self) -> WhmSandbox:
        assert isinstance(self.server.app, WhmSandbox)
        return self.server.app

    def reset(self, rng: random.Random) -> None:
        self.client.flushall()
        with self.app.state.lock:
            for account in self.app.state.accounts.values():
                account.outgoing = "active"
        # Transient faults: some calls fail before the panel applies them, some after.
        self.server.set_faults(Faults(error_rate=0.2, drop_after_apply_rate=0.15, seed=rng.randrange(2**31)))


def run_schedule(h: Harness, commands: list[Command], rng: random.Random) -> None:
    """Deliver every command (plus redeliveries) in a random interleaving until all ended."""
    h.reset(rng)
    guard = TargetGuard(h.client, h.settings.keys)
    admission = list(range(len(commands)))
    rng.shuffle(admission)
    entries = {i: f"{int(T0.timestamp() * 1000) + 3_600_000 + pos}-0" for pos, i in enumerate(admission)}
    stamps = {i: stamp_for(c, entries[i]) for i, c in enumerate(commands)}
    pending = [Delivery(i) for i in admission] + [Delivery(rng.randrange(len(commands))) for _ in range(2)]
    running: list[Delivery] = []
    superseded: set[int] = set()

    def call(c: Command) -> PanelResult:
        # No command reaches the panel once a newer one of its reason was committed.
        last: bytes | None = h.client.hget(h.settings.keys.order("whm1", c.target, "outgoing"), f"last:{c.reason}")  # type: ignore[assignment]
        assert last is None or not stamps[int(c.id[1:])] < OrderStamp.decode(last.decode()), "stale call"
        return h.backend.execute(c)

    steps = 0
    while pending or running:
        steps += 1
        if steps > 400:
            h.server.set_faults(Faults())
        if running and (not pending or rng.random() < 0.5):
            delivery = running.pop(rng.randrange(len(running)))
            assert delivery.turn is not None
            try:
                complete(guard, delivery.turn, call)
            except PanelError:
                pending.append(Delivery(delivery.index))  # a retry
                continue
            if rng.random() < 0.1:
                pending.append(Delivery(delivery.index))  # a redelivery of a finished command
            continue
        delivery = pending.pop(rng.randrange(len(pending)))
        try:
            delivery.turn = guard.take(commands[delivery.index], entries[delivery.index])
        except TargetBusy:
            pending.append(delivery)
        except Superseded:
            superseded.add(delivery.index)
        else:
            running.append(delivery)
    assert_converged(h, commands, stamps, superseded)


def assert_converged(h: Harness, commands: list[Command], stamps: dict[int, OrderStamp], superseded: set[int]) -> None:
    """Holds are each reason's newest decision, and the panel follows the holds."""
    for target in TARGETS:
        newest: dict[str, int] = {}
        for i, c in enumerate(commands):
            reason = str(c.reason)
            if c.target == target and (reason not in newest or stamps[newest[reason]] < stamps[i]):
                newest[reason] = i
        expected = {r for r, i in newest.items() if commands[i].command == "suspend_outgoing"}
        holds = set(holds_of(h.client, h.settings.keys, "whm1", target, "outgoing"))
        assert holds == expected
        assert h.app.state.accounts[target].outgoing == ("suspended" if holds else "active")
    for i in superseded:
        c = commands[i]
        assert any(d.target == c.target and d.reason == c.reason and stamps[i] < stamps[j]
                   for j, d in enumerate(commands)), "only a command with a newer one of its reason is superseded"


def test_any_interleaving_of_suspends_and_unsuspends_ends_with_the_panel_as_the_holds_say(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], whm_app: SandboxServer,
) -> None:
    settings_ = settings_for({"whm1": ("whm", whm_app)})
    h = Harness(redis_client, settings_, whm_app, build_backends(settings_.backends)["whm1"])
    interleavings = 0

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(specs=specs, seed=st.integers(0, 2**32 - 1))
    def check(specs: list[Spec], seed: int) -> None:
        # given: commands from several producers and reasons, for two targets
        nonlocal interleavings
        commands = [
            command("suspend_outgoing" if s.suspend else "unsuspend_outgoing", s.target,
                    at=T0 + timedelta(minutes=s.minute), reason=s.reason, producer=s.reason, seq=s.seq, cid=f"c{i}")
            for i, s in enumerate(specs)
        ]
        # when: each set runs under several random interleavings with faults, retries, redeliveries
        for schedule in range(SCHEDULES_PER_EXAMPLE):
            run_schedule(h, commands, random.Random(seed * 31 + schedule))
            interleavings += 1
        # then: (asserted in run_schedule) the panel equals the holds; nothing stale was called

    check()
    assert interleavings >= 1000


def ordered(runtime: Runtime) -> Runtime:
    """Turn the ordering gate on in a started runtime (Runtime does not build it yet)."""
    return runtime


def wire(body: dict[str, object], at: datetime) -> dict[str, object]:
    return {**body, "issued_at": at.isoformat().replace("+00:00", "Z")}


def test_a_stale_suspend_retried_after_a_newer_unsuspend_ends_superseded_without_reaching_the_panel(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
    whm: SandboxServer,
) -> None:
    # given: abuse detection suspends at "10:00" (7 minutes ago) and the panel answers 429 Retry-After 3 s
    ten = datetime.now(UTC) - timedelta(minutes=7)
    ordered(runtime_for(settings_for({"whm1": ("whm", whm)})))
    whm.set_faults(Faults(rate_limit_rate=1.0, retry_after_s=3.0))
    add_command(redis_client, wire({"id": "abuse-1000", "command": "suspend_outgoing", "backend": "whm1",
                                    "args": {"user": "example"}, "producer": "abuse-detector", "reason": "abuse"}, ten))
    wait_for(redis_client, lambda events: any(e.id == "abuse-1000" and e.status == "retrying" for e in events))
    # when: at "10:05" an operator clears the abuse suspension, and it succeeds while the suspend waits
    whm.set_faults(Faults())
    add_command(redis_client, wire({"id": "clear-1005", "command": "unsuspend_outgoing", "backend": "whm1",
                                    "args": {"user": "example"}, "producer": "operator", "reason": "abuse"},
                                   ten + timedelta(minutes=5)))
    events = wait_for_terminal(redis_client, {"clear-1005", "abuse-1000"}, timeout=30)
    # then: the old suspend's retry ended superseded, and the panel was never suspended
    final = {e.id: e for e in events if e.terminal}
    assert final["clear-1005"].status == "succeeded"
    assert final["abuse-1000"].status == "superseded"
    assert final["abuse-1000"].error is not None and "clear-1005" in final["abuse-1000"].error.message
    app = whm.app
    assert isinstance(app, WhmSandbox)
    assert app.state.accounts["example"].outgoing == "active"
    assert all(change.new != "suspended" for change in app.ledger.changes())


def test_commands_for_different_targets_run_concurrently(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
) -> None:
    # given: a sandbox with twelve accounts that answers after 300 ms, and a worker with 8 threads
    app = WhmSandbox(token="sandbox-whm-token")
    users = [f"user{i}" for i in range(12)]
    for user in users:
        app.add_account(user)
    with SandboxServer(app, faults=Faults(latency_s=0.3)) as server:
        ordered(runtime_for(settings_for({"whm1": ("whm", server)}), threads=8))
        # when: one suspend per account is sent
        now = datetime.now(UTC)
        for user in users:
            add_command(redis_client, wire({"id": f"s-{user}", "command": "suspend_outgoing", "backend": "whm1",
                                            "args": {"user": user}, "producer": "abuse-detector"}, now))
        events = wait_for_terminal(redis_client, {f"s-{u}" for u in users}, timeout=60)
        # then: all succeeded and the panel saw several calls in flight at once
        assert {e.status for e in events if e.terminal} == {"succeeded"}
        assert server.stats()["max_in_flight"] > 1


def wait_for(client: redis.Redis, predicate: Callable[[list[Event]], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate(read_events(client)):
        assert time.monotonic() < deadline, f"timed out; events: {read_events(client)[-3:]}"
        time.sleep(0.02)


def test_commands_for_one_target_never_reach_the_panel_at_the_same_time_and_the_newest_decides(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
    whm: SandboxServer,
) -> None:
    # given: a slow panel and a worker with 8 threads
    whm.set_faults(Faults(latency_s=0.3))
    ordered(runtime_for(settings_for({"whm1": ("whm", whm)}), threads=8))
    # when: three decisions of abuse detection for one account arrive together, newest last issued
    now = datetime.now(UTC) - timedelta(minutes=1)
    for i, name in enumerate(("suspend_outgoing", "unsuspend_outgoing", "suspend_outgoing")):
        add_command(redis_client, wire({"id": f"d{i}", "command": name, "backend": "whm1", "args": {"user": "example"},
                                        "producer": "abuse-detector"}, now + timedelta(seconds=i)))
    events = wait_for_terminal(redis_client, {"d0", "d1", "d2"}, timeout=60)
    # then: the panel never had two calls at once, the others waited, and the newest decision stands
    assert whm.stats()["max_in_flight"] == 1
    assert any(e.status == "waiting" and e.error is not None and e.error.kind == "target_busy" for e in events)
    final = {e.id: e.status for e in events if e.terminal}
    assert final["d2"] == "succeeded"
    assert set(final.values()) <= {"succeeded", "superseded"}
    app = whm.app
    assert isinstance(app, WhmSandbox)
    assert app.state.accounts["example"].outgoing == "suspended"


def test_a_lease_left_by_an_earlier_attempt_of_the_same_command_is_taken_over_but_another_commands_lease_is_not(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
    whm: SandboxServer,
) -> None:
    # given: leases on two accounts' outgoing turn that will not expire for 10 minutes, as a Redis
    # outage leaves them when an attempt's release never arrives: alpha's is held by an earlier
    # attempt of command "mine-1", beta's by another command
    settings = settings_for({"whm1": ("whm", whm)})
    until = int(time.time() * 1000) + 600_000
    redis_client.hset(settings.keys.order("whm1", "example", "outgoing"), mapping={"lease": "mine-1:aaaaaaaaaaaa", "lease_until": until})
    redis_client.hset(settings.keys.order("whm1", "other", "outgoing"), mapping={"lease": "theirs-1:bbbbbbbbbbbb", "lease_until": until})
    app = whm.app
    assert isinstance(app, WhmSandbox)
    runtime_for(settings)
    now = datetime.now(UTC)
    # when: "mine-1" (for the first account) and a new command for the second are sent
    add_command(redis_client, wire({"id": "mine-1", "command": "suspend_outgoing", "backend": "whm1",
                                    "args": {"user": "example"}, "producer": "abuse-detector"}, now))
    add_command(redis_client, wire({"id": "blocked-1", "command": "suspend_outgoing", "backend": "whm1",
                                    "args": {"user": "other"}, "producer": "abuse-detector"}, now))
    # then: mine-1 takes its own old lease over and succeeds; blocked-1 waits for the other lease
    events = wait_for_terminal(redis_client, {"mine-1"}, timeout=30)
    assert [e.status for e in events if e.id == "mine-1" and e.terminal] == ["succeeded"]
    wait_for(redis_client, lambda evs: any(e.id == "blocked-1" and e.status == "waiting" for e in evs))
    assert not any(e.id == "blocked-1" and e.terminal for e in read_events(redis_client))
    assert app.state.accounts["other"].outgoing == "active"
