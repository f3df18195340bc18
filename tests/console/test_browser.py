"""The console in a real headless Chromium: log in, watch, search, replay, release, be refused.

One browser for the module (tests/console/conftest.py); each test runs its own worker, sandboxes
and console against the session's Redis. Every page visited is saved (to docs/console/*.png with MAILOPS_SCREENSHOTS=1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from click.testing import CliRunner

from tests.clock import iso
from tests.conftest import WHM_TOKEN, add_command, retry_for, wait_for_terminal
from tests.console.conftest import log_in, screenshot, wait_for, with_console
from workers.attempt.retry_policy import RetryPolicy
from workers.cli.main import cli
from workers.runtime import Runtime
from workers.sandbox import Faults, SandboxServer
from workers.sandbox.whm import WhmSandbox
from workers.settings import Settings

pytestmark = pytest.mark.timeout(120)


def by_css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def one(driver: Any, selector: str, timeout: float = 10.0) -> Any:
    """The element, waited for: a click that submits a form returns before the next page is there."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(lambda d: d.find_element(By.CSS_SELECTOR, selector))


def text_of(driver: Any, selector: str) -> str:
    """The element's text, read in one step (a live region or a reloading page may replace it
    between a find and a read)."""
    return str(driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : '';", selector))


def command(cid: str, name: str, backend: str, user: str, producer: str, *, minutes_ago: int = 1,
            reason: str | None = None, batch: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {"id": cid, "command": name, "backend": backend, "args": {"user": user},
                               "producer": producer, "issued_at": iso(datetime.now(UTC) - timedelta(minutes=minutes_ago))}
    if reason:
        body["reason"] = reason
    if batch:
        body["batch"] = batch
    return body


@pytest.fixture
def fleet() -> Iterator[tuple[SandboxServer, SandboxServer]]:
    """Two WHM servers that both hold accounts ``shop`` and ``example``."""
    apps = [WhmSandbox(token=WHM_TOKEN, name=name) for name in ("whm1", "whm2")]
    for app in apps:
        for user in ("shop", "example", "other"):
            app.add_account(user)
    with SandboxServer(apps[0]) as first, SandboxServer(apps[1]) as second:
        yield first, second


def test_an_operator_logs_in_and_sees_a_stopped_backends_breaker_open_on_the_overview_within_5_s(
    browser: Any, redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
    console_for: Callable[[Settings], str], fleet: tuple[SandboxServer, SandboxServer],
) -> None:
    # Given a fleet whose backend whm2 has stopped answering, and an operator on the overview
    whm1, whm2 = fleet
    settings = with_console(settings_for({"whm1": ("whm", whm1), "whm2": ("whm", whm2)}, breaker_failures=2))
    runtime_for(settings)
    base = console_for(settings)
    log_in(browser, base, "alice")
    assert text_of(browser, "tr[data-backend=whm2] .breaker") == "closed"
    whm2.stop()
    # When commands for whm2 fail to connect
    for n, user in enumerate(("shop", "example", "other")):
        add_command(redis_client, command(f"down-{n}", "suspend_outgoing", "whm2", user, "abuse-detector"))
    add_command(redis_client, command("up-1", "suspend_outgoing", "whm1", "shop", "abuse-detector"))
    # Then, without reloading, the overview shows whm2's breaker open within 5 s, and whm1's closed
    wait_for(lambda: text_of(browser, "tr[data-backend=whm2] .breaker") == "open", 5.0, "whm2's breaker open")
    assert text_of(browser, "tr[data-backend=whm1] .breaker") == "closed"
    screenshot(browser, "overview")
    # And when whm1's panel is changed behind mailops' back, a reconcile check from the backends page shows the drift
    wait_for_terminal(redis_client, {"up-1"})
    whm1.app.state.accounts["shop"].outgoing = "active"
    browser.get(f"{base}/backends")
    assert "open" in one(browser, "#backends").text
    one(browser, "#reconcile").click()
    wait_for(lambda: bool(by_css(browser, "#drift-summary")), 10, "the reconcile check finished")
    drift = [r.text for r in by_css(browser, "tr.drift-row")]
    assert len(drift) == 1 and drift[0].startswith("whm1 shop outgoing drift suspended active")
    # And its health checks say whm2 is down
    one(browser, "#check").click()
    wait_for(lambda: "FAILED" in text_of(browser, "#backends"), 10, "the health check showing whm2 FAILED")
    screenshot(browser, "backends")


def test_the_same_account_on_two_backends_is_found_by_target_and_releasing_the_abuse_hold_on_one_unsuspends_only_that_panel(
    browser: Any, redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
    console_for: Callable[[Settings], str], fleet: tuple[SandboxServer, SandboxServer],
) -> None:
    # Given shop suspended for abuse on whm1 and by billing on whm2 (same account name, two servers)
    whm1, whm2 = fleet
    settings = with_console(settings_for({"whm1": ("whm", whm1), "whm2": ("whm", whm2)}))
    runtime_for(settings)
    add_command(redis_client, command("abuse-1", "suspend_outgoing", "whm1", "shop", "abuse-detector", minutes_ago=3,
                                      reason="abuse"))
    add_command(redis_client, command("bill-1", "suspend_outgoing", "whm2", "shop", "billing", minutes_ago=2))
    wait_for_terminal(redis_client, {"abuse-1", "bill-1"})
    base = console_for(settings)
    log_in(browser, base, "alice")
    # When the operator searches commands by target
    browser.get(f"{base}/commands?by=target&q=shop")
    rows = by_css(browser, "tr.command-row")
    # Then both servers' commands for shop are listed
    assert sorted(r.find_element("css selector", ".backend").text for r in rows) == ["whm1", "whm2"]
    screenshot(browser, "commands")
    # And a command's page shows its timeline: admitted, its attempt, its outcome
    one(browser, "a[href='/commands/abuse-1']").click()
    assert one(browser, "#command-id").text == "abuse-1"
    timeline = one(browser, "#timeline").text
    assert "attempt 1: succeeded" in timeline and "outcome succeeded" in timeline
    assert "abuse" in browser.page_source  # the hold on its target
    screenshot(browser, "command")
    # When the operator finds shop's holds and releases whm1's abuse hold with a reason
    browser.get(f"{base}/holds?target=shop")
    holds = {(r.get_attribute("data-backend"), r.get_attribute("data-reason")) for r in by_css(browser, "tr.hold")}
    assert holds == {("whm1", "abuse"), ("whm2", "billing")}
    screenshot(browser, "holds")
    row = one(browser, "tr.hold[data-backend=whm1]")
    row.find_element("css selector", "input.why").send_keys("ticket 4711: customer cleaned the mailbox")
    row.find_element("css selector", "button.release").click()
    # Then the unsuspend runs on whm1 only: its panel is active again in the sandbox ledger, whm2's stays suspended
    wait_for(lambda: any(c.new == "active" for c in whm1.app.ledger.changes()), 15, "whm1 unsuspended")
    assert [(c.target, c.new) for c in whm1.app.ledger.changes()] == [("shop", "suspended"), ("shop", "active")]
    assert [(c.target, c.new) for c in whm2.app.ledger.changes()] == [("shop", "suspended")]
    wait_for(lambda: "succeeded" in text_of(browser, "h1"), 10, "the release's page shows it succeeded")
    # And the audit stream names the console user, and the holds page keeps only whm2's
    audit = [orjson.loads(f[b"body"]) for _, f in redis_client.xrange("mailops:audit")]
    assert any(a.get("operator") == "alice" and a.get("action") == "holds.release" and a.get("via") == "console"
               for a in audit)
    browser.get(f"{base}/holds?target=shop")
    assert [r.get_attribute("data-backend") for r in by_css(browser, "tr.hold")] == ["whm2"]


def test_two_dead_letters_selected_by_filter_are_replayed_after_the_count_is_confirmed_and_succeed(
    browser: Any, redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
    console_for: Callable[[Settings], str], fleet: tuple[SandboxServer, SandboxServer], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a bulk batch whose three unsuspends were dead-lettered (two on whm1, one on whm2)
    retry_for(monkeypatch, "unsuspend_outgoing",
                        RetryPolicy(max_attempts=1, min_backoff_ms=50, max_backoff_ms=100))
    whm1, whm2 = fleet
    settings = with_console(settings_for({"whm1": ("whm", whm1), "whm2": ("whm", whm2)}))
    runtime_for(settings)
    whm1.set_faults(Faults(error_rate=1.0))
    whm2.set_faults(Faults(error_rate=1.0))
    lines = [{"command": "unsuspend_outgoing", "backend": b, "args": {"user": u}}
             for b, u in (("whm1", "shop"), ("whm1", "example"), ("whm2", "shop"))]
    batch_file = tmp_path / "unsuspend.jsonl"
    batch_file.write_text("".join(orjson.dumps(line).decode() + "\n" for line in lines))
    config = Path(str(tmp_path / "mailops.toml"))
    config.write_text(config.read_text() + "[mailops]\nrequire_signatures = false\n")
    sent = CliRunner().invoke(cli, ["bulk", str(batch_file), "--no-wait"],
                              env={"MAILOPS_REDIS_URL": str(settings.redis_url), "MAILOPS_CONFIG": str(config),
                                   "TOKEN_WHM1": WHM_TOKEN, "TOKEN_WHM2": WHM_TOKEN})
    assert sent.exit_code == 0, sent.output
    wait_for(lambda: redis_client.zcard("mailops:dlq") == 3, 30, "three dead letters")
    whm1.set_faults(Faults())
    base = console_for(settings)
    log_in(browser, base, "alice")
    # When the operator filters dead letters by backend whm1, ticks them all and replays them
    browser.get(f"{base}/dead-letters")
    assert len(by_css(browser, "tr.letter")) == 3
    one(browser, "#filter-backend").send_keys("whm1")
    one(browser, "#filter").click()
    wait_for(lambda: len(by_css(browser, "tr.letter")) == 2, 10, "the two dead letters of whm1, filtered")
    one(browser, "#tick-all").click()
    screenshot(browser, "dead-letters")
    one(browser, "#replay-selected").click()
    # Then the count is confirmed first
    assert "2" in one(browser, "#confirm-count").text
    screenshot(browser, "dead-letters-confirm")
    one(browser, "#confirm").click()
    assert "replayed 2 of 2" in one(browser, "#flash").text
    # And both succeed; whm2's dead letter stays
    ids = [str(k.decode()) for k in redis_client.zrange("mailops:dlq", 0, -1)]
    assert len(ids) == 1
    wait_for(lambda: sum(redis_client.hget(f"mailops:cmd:{i}", "status") == b"succeeded"
                         for i in _ids_on(redis_client, "whm1")) == 2, 20, "both replays succeeded")
    browser.get(f"{base}/commands?by=backend&q=whm1&status=succeeded")
    assert len(by_css(browser, "tr.command-row")) == 2
    # And the batch page shows its progress and the failure left
    browser.get(f"{base}/batches")
    screenshot(browser, "batches")
    one(browser, "a[href^='/batches/']").click()
    assert one(browser, "#batch-progress").get_attribute("value") == "3"
    screenshot(browser, "batch")
    # And the one left is replayed from its own page once whm2 answers again
    whm2.set_faults(Faults())
    browser.get(f"{base}/commands/{ids[0]}")
    one(browser, "#replay-one").click()
    assert "replayed 1 of 1" in one(browser, "#flash").text
    wait_for(lambda: redis_client.hget(f"mailops:cmd:{ids[0]}", "status") == b"succeeded", 20, "the third replay succeeded")


def _ids_on(client: redis.Redis, backend: str) -> list[str]:
    return [m.decode() for m in client.zrange(f"mailops:idx:backend:{backend}", 0, -1)]


def test_a_viewer_is_refused_a_replay_and_an_operator_is_refused_a_post_without_the_csrf_token(
    browser: Any, redis_client: redis.Redis, settings_for: Callable[..., Settings],
    console_for: Callable[[Settings], str], fleet: tuple[SandboxServer, SandboxServer],
) -> None:
    whm1, _ = fleet
    settings = with_console(settings_for({"whm1": ("whm", whm1)}))
    redis_client.zadd("mailops:dlq", {"dl-x": 1})
    base = console_for(settings)
    post = """const [path, body, done] = arguments;
      fetch(path, {method: "POST", credentials: "same-origin",
                   headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: body})
        .then(r => r.text().then(t => done([r.status, t])));"""
    # Given a viewer logged in: no action buttons, and a replay it sends anyway (with its CSRF token) is refused
    log_in(browser, base, "victor")
    browser.get(f"{base}/dead-letters")
    assert by_css(browser, "#replay-selected") == []
    csrf = one(browser, "input[name=csrf]").get_attribute("value")
    status, text = browser.execute_async_script(post, "/dead-letters/replay", f"csrf={csrf}&scope=selected&id=dl-x&confirm=1")
    assert status == 403 and "viewer" in text
    # And the session cookie is HttpOnly and SameSite=Strict (scripts cannot read it)
    cookie = browser.get_cookie("mailops_console")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert "mailops_console" not in browser.execute_script("return document.cookie")
    # When an operator posts without the CSRF token, or with another session's, it is refused
    log_in(browser, base, "alice")
    browser.get(f"{base}/dead-letters")
    for body in ("scope=selected&id=dl-x&confirm=1", f"csrf={csrf}&scope=selected&id=dl-x&confirm=1"):
        status, text = browser.execute_async_script(post, "/dead-letters/replay", body)
        assert status == 403 and "CSRF" in text
    # And a stranger (no session) is sent to the login page
    browser.delete_all_cookies()
    browser.get(f"{base}/holds")
    assert browser.current_url.endswith("/login")
    screenshot(browser, "login")
    assert redis_client.zcard("mailops:dlq") == 1
