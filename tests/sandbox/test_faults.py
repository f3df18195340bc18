"""Fault injection over real HTTP, switched on through the ``/__sandbox__/faults`` control endpoint."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.sandbox.conftest import WHM_AUTH
from workers.sandbox import SandboxServer

SUSPEND = {"api.version": "1", "user": "example"}


def set_faults(http: httpx.Client, server: SandboxServer, **faults: Any) -> dict[str, Any]:
    response = http.post(f"{server.url}/__sandbox__/faults", json=faults)
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


def ledger(http: httpx.Client, server: SandboxServer) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = http.get(f"{server.url}/__sandbox__/ledger").json()
    return result


def suspend(http: httpx.Client, server: SandboxServer) -> httpx.Response:
    return http.post(f"{server.url}/json-api/suspend_outgoing_email", data=SUSPEND, headers=WHM_AUTH)


def test_error_rate_answers_500_with_an_html_body_before_applying(whm_server: SandboxServer, http: httpx.Client) -> None:
    # Given every request failing with a server error
    set_faults(http, whm_server, error_rate=1.0)
    # When a suspension is sent
    response = suspend(http, whm_server)
    # Then it is HTTP 500 with an HTML page, and nothing was applied
    assert response.status_code == 500
    assert response.headers["content-type"] == "text/html"
    assert response.text.startswith("<html>")
    assert ledger(http, whm_server) == []


def test_rate_limit_rate_answers_429_with_retry_after(whm_server: SandboxServer, http: httpx.Client) -> None:
    # Given every request rate limited, with a 7-second Retry-After
    set_faults(http, whm_server, rate_limit_rate=1.0, retry_after_s=7)
    # When a suspension is sent
    response = suspend(http, whm_server)
    # Then it is HTTP 429 with Retry-After: 7, and nothing was applied
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert ledger(http, whm_server) == []


def test_login_page_rate_answers_200_with_the_html_login_page_instead_of_json(
        whm_server: SandboxServer, http: httpx.Client) -> None:
    # Given every answer replaced by cpsrvd's HTML login page
    set_faults(http, whm_server, login_page_rate=1.0)
    # When a suspension is sent
    response = suspend(http, whm_server)
    # Then the status is 200 but the body is the login form, not JSON, and nothing was applied
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html"
    assert "login_form" in response.text and "type='password'" in response.text
    with pytest.raises(ValueError):
        response.json()
    assert ledger(http, whm_server) == []


def test_html_rate_answers_200_with_an_html_page_that_is_not_a_login_page(
        whm_server: SandboxServer, http: httpx.Client) -> None:
    set_faults(http, whm_server, html_rate=1.0)
    response = suspend(http, whm_server)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html"
    assert "<form" not in response.text
    assert ledger(http, whm_server) == []


def test_drop_after_apply_rate_applies_the_change_then_closes_the_connection(
        whm_server: SandboxServer, http: httpx.Client) -> None:
    # Given every request applied and then dropped without an answer
    set_faults(http, whm_server, drop_after_apply_rate=1.0)
    # When a suspension is sent
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        suspend(http, whm_server)
    # Then the client got no answer, yet the ledger shows the change applied exactly once
    changes = ledger(http, whm_server)
    assert [(c["target"], c["field"], c["new"]) for c in changes] == [("example", "outgoing", "suspended")]


def test_a_share_of_faults_hits_about_that_share_of_requests(whm_server: SandboxServer, http: httpx.Client) -> None:
    # Given half of the requests failing, with a fixed seed
    set_faults(http, whm_server, error_rate=0.5, seed=7)
    # When 60 harmless calls are made
    statuses = [http.get(f"{whm_server.url}/json-api/version", params={"api.version": "1"}, headers=WHM_AUTH).status_code
                for _ in range(60)]
    # Then both outcomes occur, in a plausible mix (not all, not none)
    assert set(statuses) == {200, 500}
    assert 10 <= statuses.count(500) <= 50


def test_posting_empty_faults_clears_them(whm_server: SandboxServer, http: httpx.Client) -> None:
    # Given faults on every request, then cleared with {}
    set_faults(http, whm_server, error_rate=1.0, html_rate=1.0)
    cleared = set_faults(http, whm_server)
    # When a suspension is sent
    response = suspend(http, whm_server)
    # Then it is answered normally and applied
    assert cleared["error_rate"] == 0.0 and cleared["html_rate"] == 0.0
    assert response.json()["metadata"]["result"] == 1
    assert len(ledger(http, whm_server)) == 1


def test_echo_rate_echoes_the_request_parameters_into_a_successful_answer(
        whm_server: SandboxServer, http: httpx.Client) -> None:
    # Given every successful answer echoing its request
    set_faults(http, whm_server, echo_rate=1.0)
    # When a suspension is sent, then it is applied and the answer carries the request's parameters
    body = suspend(http, whm_server).json()
    assert body["metadata"]["result"] == 1
    assert body["echo"]["user"] == "example" and "'user': 'example'" in body["metadata"]["reason"]
    assert [c["target"] for c in ledger(http, whm_server)] == ["example"]


def account_summary(http: httpx.Client, server: SandboxServer) -> dict[str, Any]:
    response = http.post(f"{server.url}/json-api/accountsummary", data={"api.version": "1", "user": "example"},
                         headers=WHM_AUTH)
    acct: dict[str, Any] = response.json()["data"]["acct"][0]
    return acct


def test_lie_rate_answers_a_change_ok_applies_nothing_and_still_answers_reads(
    whm_server: SandboxServer, http: httpx.Client,
) -> None:
    # Given a panel that lies about every change call
    set_faults(http, whm_server, lie_rate=1.0)
    # When a suspension is sent, then the account read
    response = suspend(http, whm_server)
    # Then the suspension answered OK, nothing was applied, and the read says so
    assert response.json()["metadata"]["result"] == 1
    assert ledger(http, whm_server) == []
    assert account_summary(http, whm_server)["outgoing_mail_suspended"] == 0
    # And the stats tell the change call from the read
    stats = http.get(f"{whm_server.url}/__sandbox__/stats").json()
    assert (stats["changes"], stats["reads"], stats["lookups"]) == (1, 1, 0)


def test_apply_late_s_applies_a_change_after_answering_it(whm_server: SandboxServer, http: httpx.Client) -> None:
    # Given a panel that applies each change 300 ms after answering
    set_faults(http, whm_server, apply_late_s=0.3)
    # When a suspension is sent
    response = suspend(http, whm_server)
    # Then it answered OK before applying, and applies it afterwards, once
    assert response.json()["metadata"]["result"] == 1
    assert account_summary(http, whm_server)["outgoing_mail_suspended"] == 0
    deadline = time.monotonic() + 5
    while not ledger(http, whm_server):
        assert time.monotonic() < deadline, "the late change never applied"
        time.sleep(0.02)
    assert [(c["target"], c["new"]) for c in ledger(http, whm_server)] == [("example", "suspended")]
    assert account_summary(http, whm_server)["outgoing_mail_suspended"] == 1


def test_changes_only_leaves_reads_and_lookups_unfaulted(whm_server: SandboxServer, http: httpx.Client) -> None:
    # Given every change call failing with a server error, and reads spared
    set_faults(http, whm_server, error_rate=1.0, changes_only=True)
    # When a suspension and a read are sent
    # Then the change fails, the read answers
    assert suspend(http, whm_server).status_code == 500
    assert account_summary(http, whm_server)["outgoing_mail_suspended"] == 0
