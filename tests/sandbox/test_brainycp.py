"""The BrainyCP sandbox over real HTTP: logins, ``{error, mess}`` answers, Russian by default."""

from __future__ import annotations

import httpx
import pytest

from tests.sandbox.conftest import BRAINY_LOGIN
from workers.sandbox import SandboxServer
from workers.sandbox.brainycp import BrainycpSandbox


def app_of(server: SandboxServer) -> BrainycpSandbox:
    assert isinstance(server.app, BrainycpSandbox)
    return server.app


def api(server: SandboxServer) -> str:
    return f"{server.url}/api/api.php"


@pytest.mark.parametrize("login", [{"username": "admin", "password": "wrong"}, {"Login": "admin", "pass": ""},
                                   {"username": "nobody", "password": "sandbox-brainy-pass"}, {}])
def test_a_bad_login_answers_not_perm2(brainy_server: SandboxServer, http: httpx.Client, login: dict[str, str]) -> None:
    # Given a wrong password, an empty one, an unknown login, or none
    # When an operation is posted
    response = http.post(api(brainy_server), data={**login, "mailclient": "1", "onspf": "1", "domain": "host.example"})
    # Then BrainyCP answers HTTP 200 {"code": 1, "message": "Not perm2"} and changes nothing
    assert response.status_code == 200
    assert response.json() == {"code": 1, "message": "Not perm2"}
    assert len(app_of(brainy_server).ledger) == 0


def test_a_blank_get_with_a_good_login_is_the_connection_check(brainy_server: SandboxServer, http: httpx.Client) -> None:
    response = http.get(api(brainy_server), params={"Login": "admin", "pass": "sandbox-brainy-pass"})
    assert (response.status_code, response.content) == (200, b"")


def test_answers_are_russian_by_default_and_english_with_language_en(
        brainy_server: SandboxServer, http: httpx.Client) -> None:
    # Given addmail without its required fields (code 2, a common code with both texts)
    form = {**BRAINY_LOGIN, "mailclient": "1", "addmail": "1"}
    # When it is sent without and then with language=en
    russian = http.post(api(brainy_server), data=form).json()
    english = http.post(api(brainy_server), data={**form, "language": "en"}).json()
    # Then the same code comes back in Russian, then in English
    assert russian == {"error": 2, "mess": "Ошибка в массиве параметров"}
    assert english == {"error": 2, "mess": "Error in the parameter array"}


def test_a_host_user_may_not_administer_another_user(brainy_server: SandboxServer, http: httpx.Client) -> None:
    # Given host user "host" logged in for itself, and another host user "other"
    app_of(brainy_server).add_account("other", "other.example")
    form = {"username": "host", "password": "host-pass", "mailclient": "1", "onspf": "1", "domain": "other.example",
            "panel_user": "other", "language": "en"}
    # When it acts as "other"
    body = http.post(api(brainy_server), data=form).json()
    # Then code 1000 refuses it
    assert body == {"error": 1000, "mess": "You do not have permission to administer this user"}


def test_addmail_with_login_and_pass_creates_the_mailbox_then_reports_already_exists(
        brainy_server: SandboxServer, http: httpx.Client) -> None:
    # Given the older Login/pass credential fields, leaving "password" to the mailbox
    form = {"Login": "admin", "pass": "sandbox-brainy-pass", "mailclient": "1", "addmail": "1", "language": "en",
            "email": "new@host.example", "password": "Box-pass-1", "quota": "100"}
    # When addmail is posted twice
    first = http.post(api(brainy_server), data=form).json()
    second = http.post(api(brainy_server), data=form).json()
    # Then the first creates it (one ledger entry) and the second is code 1 "already exists"
    assert first == {"error": 0, "mess": "Mailbox added successfully: new@host.example"}
    assert second == {"error": 1, "mess": "This mailbox already exists: new@host.example"}
    assert [(c.target, c.field, c.new) for c in app_of(brainy_server).ledger.changes()] == [
        ("new@host.example", "mailbox", "present")]


def test_an_operation_sent_as_get_is_not_available(brainy_server: SandboxServer, http: httpx.Client) -> None:
    # The API is POST only; a GET naming the module is refused
    body = http.get(api(brainy_server), params={**BRAINY_LOGIN, "mailclient": "1", "onspf": "1",
                                                "domain": "host.example"}).json()
    assert body["error"] == 400
    assert app_of(brainy_server).state.domains["host.example"].spf is False
