"""The WHM sandbox over real HTTP: request forms, credentials, and the texts of its failures."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.sandbox.conftest import WHM_AUTH
from workers.sandbox import SandboxServer
from workers.sandbox.whm import WhmSandbox

#: ``API failure: (XID ab3k9z) ...``: six letters of the Cpanel::Exception alphabet (no i, l, o, 0, 1).
XID = re.compile(r"^API failure: \(XID [a-hjkmnp-z2-9]{6}\) ")


def app_of(server: SandboxServer) -> WhmSandbox:
    assert isinstance(server.app, WhmSandbox)
    return server.app


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_whm_accepts_a_function_call_as_a_query_string_or_a_posted_form(
        whm_server: SandboxServer, http: httpx.Client, method: str) -> None:
    # Given the WHM sandbox with account example, outgoing mail active
    params = {"api.version": "1", "user": "example"}
    # When suspend_outgoing_email is called as GET ?query or as a POSTed form
    if method == "GET":
        response = http.get(f"{whm_server.url}/json-api/suspend_outgoing_email", params=params, headers=WHM_AUTH)
    else:
        response = http.post(f"{whm_server.url}/json-api/suspend_outgoing_email", data=params, headers=WHM_AUTH)
    # Then WHM API 1 metadata says OK and the account is suspended, recorded once in the ledger
    assert response.status_code == 200
    assert response.json()["metadata"] == {"command": "suspend_outgoing_email", "reason": "OK", "result": 1,
                                           "version": 1}
    assert app_of(whm_server).state.accounts["example"].outgoing == "suspended"
    changes = app_of(whm_server).ledger.changes()
    assert [(c.target, c.field, c.old, c.new) for c in changes] == [("example", "outgoing", "active", "suspended")]


@pytest.mark.parametrize("authorization", ["whm root:wrong-token", "whm root:", "cpanel root:sandbox-whm-token", ""])
def test_whm_answers_bad_credentials_with_403_and_the_cpanelresult_access_denied_body(
        whm_server: SandboxServer, http: httpx.Client, authorization: str) -> None:
    # Given a request whose Authorization header is wrong, empty or of the wrong scheme
    headers = {"Authorization": authorization} if authorization else {}
    # When it calls a WHM function
    response = http.post(f"{whm_server.url}/json-api/suspend_outgoing_email",
                         data={"api.version": "1", "user": "example"}, headers=headers)
    # Then it is refused with HTTP 403 and the observed cpanelresult body, and nothing changes
    assert response.status_code == 403
    assert response.json() == {"cpanelresult": {"apiversion": "2", "error": "Access denied",
                                                "data": {"reason": "Access denied", "result": "0"}, "type": "text"}}
    assert len(app_of(whm_server).ledger) == 0


def test_an_unknown_user_fails_with_an_xid_reason_in_curly_quotes(whm_server: SandboxServer, http: httpx.Client) -> None:
    # Given no account named ghost
    # When its outgoing mail is suspended
    response = http.post(f"{whm_server.url}/json-api/suspend_outgoing_email",
                         data={"api.version": "1", "user": "ghost"}, headers=WHM_AUTH)
    # Then HTTP 200 carries metadata.result 0 and "API failure: (XID xxxxxx) You do not have a user named “ghost”."
    assert response.status_code == 200
    metadata = response.json()["metadata"]
    assert metadata["result"] == 0
    assert XID.match(metadata["reason"]), metadata["reason"]
    assert metadata["reason"].endswith("You do not have a user named “ghost”.")


def test_each_failure_gets_its_own_xid(whm_server: SandboxServer, http: httpx.Client) -> None:
    # Given the same failing call made several times
    reasons = {http.post(f"{whm_server.url}/json-api/suspend_outgoing_email",
                         data={"api.version": "1", "user": "ghost"}, headers=WHM_AUTH).json()["metadata"]["reason"]
               for _ in range(5)}
    # Then the XIDs differ (an XID names one logged exception)
    assert len(reasons) > 1


def test_uapi_cpanel_says_result_1_outside_while_the_inner_uapi_status_is_0(
        whm_server: SandboxServer, http: httpx.Client) -> None:
    # Given account example without a mailbox ghost@example.example
    params = {"api.version": "1", "cpanel.user": "example", "cpanel.module": "Email",
              "cpanel.function": "suspend_login", "email": "ghost@example.example"}
    # When Email::suspend_login runs through uapi_cpanel
    body = http.get(f"{whm_server.url}/json-api/uapi_cpanel", params=params, headers=WHM_AUTH).json()
    # Then the WHM layer says 1, the UAPI layer 0 with its error text (no XID), and nothing changes
    assert body["metadata"]["result"] == 1
    assert body["data"]["uapi"]["status"] == 0
    assert body["data"]["uapi"]["errors"] == ["You do not have an email account named “ghost@example.example”."]
    assert len(app_of(whm_server).ledger) == 0


def test_modifyacct_without_api_version_answers_in_the_legacy_api_0_shape(
        whm_server: SandboxServer, http: httpx.Client) -> None:
    # When modifyacct is called without api.version (old servers' API 0)
    body = http.post(f"{whm_server.url}/json-api/modifyacct", data={"user": "example", "MAXPOP": "10"},
                     headers=WHM_AUTH).json()
    # Then it answers result[0].status/statusmsg and stores the field
    assert (body["result"][0]["status"], body["result"][0]["statusmsg"]) == (1, "Account Modified")
    assert app_of(whm_server).state.accounts["example"].settings == {"MAXPOP": "10"}
