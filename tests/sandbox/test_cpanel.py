"""The cPanel UAPI sandbox over real HTTP: request forms, credentials, flat UAPI results."""

from __future__ import annotations

import httpx
import pytest

from tests.sandbox.conftest import CPANEL_AUTH
from workers.sandbox import SandboxServer
from workers.sandbox.cpanel import CpanelSandbox


def app_of(server: SandboxServer) -> CpanelSandbox:
    assert isinstance(server.app, CpanelSandbox)
    return server.app


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_cpanel_accepts_a_uapi_call_as_a_query_string_or_a_posted_form(
        cpanel_server: SandboxServer, http: httpx.Client, method: str) -> None:
    # Given mailbox info@shop.example with outgoing mail active
    url = f"{cpanel_server.url}/execute/Email/suspend_outgoing"
    params = {"email": "info@shop.example"}
    # When Email::suspend_outgoing is called as GET ?query or as a POSTed form
    if method == "GET":
        response = http.get(url, params=params, headers=CPANEL_AUTH)
    else:
        response = http.post(url, data=params, headers=CPANEL_AUTH)
    # Then the flat UAPI result says status 1 (empty lists as null) and the mailbox is suspended once
    assert response.status_code == 200
    assert response.json() == {"status": 1, "data": 1, "errors": None, "messages": None, "warnings": None,
                               "metadata": {}}
    assert app_of(cpanel_server).state.mailboxes["info@shop.example"].outgoing == "suspended"
    changes = app_of(cpanel_server).ledger.changes()
    assert [(c.target, c.field, c.new) for c in changes] == [("info@shop.example", "outgoing", "suspended")]


@pytest.mark.parametrize("authorization", ["cpanel shop:wrong", "cpanel other:sandbox-cpanel-token",
                                           "whm shop:sandbox-cpanel-token", ""])
def test_cpanel_answers_bad_credentials_with_403_access_denied(
        cpanel_server: SandboxServer, http: httpx.Client, authorization: str) -> None:
    # Given a wrong token, an unknown user, the WHM scheme, or no header at all
    headers = {"Authorization": authorization} if authorization else {}
    # When a UAPI function is called
    response = http.post(f"{cpanel_server.url}/execute/Email/suspend_outgoing", data={"email": "info@shop.example"},
                         headers=headers)
    # Then it is refused with 403 and the cpanelresult "Access denied" body; nothing changes
    assert response.status_code == 403
    assert response.json()["cpanelresult"]["error"] == "Access denied"
    assert len(app_of(cpanel_server).ledger) == 0


def test_a_token_only_reaches_uapi_paths(cpanel_server: SandboxServer, http: httpx.Client) -> None:
    # When a valid token is used outside /execute/
    response = http.get(f"{cpanel_server.url}/json-api/listaccts", headers=CPANEL_AUTH)
    # Then the server says tokens allow UAPI or API 2 only
    assert response.status_code == 403
    assert response.text == "Token authentication allows access to UAPI or API 2 calls only."


def test_a_missing_mailbox_fails_with_status_0_and_the_error_text_in_curly_quotes(
        cpanel_server: SandboxServer, http: httpx.Client) -> None:
    # When a mailbox the account does not have is suspended
    body = http.post(f"{cpanel_server.url}/execute/Email/suspend_login", data={"email": "ghost@shop.example"},
                     headers=CPANEL_AUTH).json()
    # Then UAPI says status 0 with the real text (UAPI texts carry no XID)
    assert body["status"] == 0
    assert body["errors"] == ["You do not have an email account named “ghost@shop.example”."]


def test_adding_an_existing_mailbox_fails_with_already_exists(cpanel_server: SandboxServer, http: httpx.Client) -> None:
    # When add_pop asks for info@shop.example, which exists
    body = http.post(f"{cpanel_server.url}/execute/Email/add_pop",
                     data={"email": "info", "domain": "shop.example", "password": "Pass-word-1"},
                     headers=CPANEL_AUTH).json()
    # Then the answer is status 0 "already exists" and the ledger is empty
    assert (body["status"], body["errors"]) == (0, ["The account “info@shop.example” already exists!"])
    assert len(app_of(cpanel_server).ledger) == 0


def test_an_unknown_function_names_module_and_function(cpanel_server: SandboxServer, http: httpx.Client) -> None:
    body = http.get(f"{cpanel_server.url}/execute/Email/no_such_thing", headers=CPANEL_AUTH).json()
    assert body["status"] == 0
    assert body["errors"] == ["The system could not find the function “no_such_thing” in the module “Email”."]


def test_cpanel_install_spf_records_requires_a_record_like_the_real_server(
        cpanel_server: SandboxServer, http: httpx.Client) -> None:
    url = f"{cpanel_server.url}/execute/EmailAuth/install_spf_records"
    # When SPF is installed without a record, then with one
    missing = http.post(url, data={"domain": "shop.example"}, headers=CPANEL_AUTH).json()
    given = http.post(url, data={"domain": "shop.example", "record": "v=spf1 +mx ~all"}, headers=CPANEL_AUTH).json()
    # Then the first is refused naming the parameter and changes nothing; the second installs it
    assert missing["status"] == 0 and "“record”" in missing["errors"][0]
    assert given["status"] == 1
    assert app_of(cpanel_server).state.domains["shop.example"].spf_record == "v=spf1 +mx ~all"
    read = http.post(f"{cpanel_server.url}/execute/EmailAuth/validate_current_spfs", data={"domain": "shop.example"},
                     headers=CPANEL_AUTH).json()
    assert read["data"][0]["current"] == {"value": "v=spf1 +mx ~all"}


def test_list_pops_with_disk_names_the_outgoing_restrictions_only_when_asked(
    cpanel_server: SandboxServer, http: httpx.Client,
) -> None:
    # Given a mailbox whose outgoing mail is suspended
    url = f"{cpanel_server.url}/execute/Email"
    http.post(f"{url}/suspend_outgoing", data={"email": "info@shop.example"}, headers=CPANEL_AUTH)
    # When its domain's mailboxes are listed without, then with get_restrictions=1
    plain = http.post(f"{url}/list_pops_with_disk", data={"domain": "shop.example"}, headers=CPANEL_AUTH).json()
    restricted = http.post(f"{url}/list_pops_with_disk", data={"domain": "shop.example", "get_restrictions": "1"},
                           headers=CPANEL_AUTH).json()
    # Then only the second carries suspended_outgoing and hold_outgoing (as the published API does)
    assert "suspended_outgoing" not in plain["data"][0] and plain["data"][0]["suspended_login"] == 0
    assert (restricted["data"][0]["email"], restricted["data"][0]["suspended_outgoing"],
            restricted["data"][0]["hold_outgoing"]) == ("info@shop.example", 1, 0)


def test_list_forwarders_names_the_address_forwarded_and_its_destination(
    cpanel_server: SandboxServer, http: httpx.Client,
) -> None:
    url = f"{cpanel_server.url}/execute/Email"
    http.post(f"{url}/add_forwarder", data={"domain": "shop.example", "email": "info", "fwdopt": "fwd",
                                            "fwdemail": "ops@elsewhere.example"}, headers=CPANEL_AUTH)
    listed = http.post(f"{url}/list_forwarders", data={"domain": "shop.example"}, headers=CPANEL_AUTH).json()
    assert [(f["dest"], f["forward"]) for f in listed["data"]] == [("info@shop.example", "ops@elsewhere.example")]


@pytest.mark.parametrize("append", [False, True])
def test_adding_an_existing_forwarder_again_appends_a_duplicate_line_only_in_append_mode(
        cpanel_server: SandboxServer, http: httpx.Client, append: bool) -> None:
    # Given a panel that appends duplicate forwarder lines (as a valiases file may), or one that does not
    app_of(cpanel_server).state.append_duplicates = append
    url = f"{cpanel_server.url}/execute/Email"
    form = {"domain": "shop.example", "email": "info", "fwdopt": "fwd", "fwdemail": "ops@elsewhere.example"}
    # When the same forwarder is added twice (a client re-sending after a lost answer)
    for _ in range(2):
        assert http.post(f"{url}/add_forwarder", data=form, headers=CPANEL_AUTH).json()["status"] == 1
    # Then the panel lists it twice in append mode, once otherwise, and its ledger says as much
    listed = http.get(f"{url}/list_forwarders", params={"domain": "shop.example"}, headers=CPANEL_AUTH).json()["data"]
    copies = 2 if append else 1
    assert [f["forward"] for f in listed] == ["ops@elsewhere.example"] * copies
    assert len(app_of(cpanel_server).ledger.changes()) == copies
