"""WHM API 1 simulator: ``/json-api/<function>`` with the real envelopes and error texts.

Answers follow ``shared/reference/panel-apis.md``: a function failure is HTTP 200 with
``metadata.result: 0`` and ``API failure: (XID ab3k9z) ...`` reasons with curly quotes; bad
credentials are HTTP 403 with a ``cpanelresult`` "Access denied" body.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from workers.sandbox.server import Reply, Request
from workers.sandbox.state import PanelState

#: XID alphabet of ``Cpanel::Exception`` (no i, l, o, 0, 1).
XID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"

ACCESS_DENIED = {
    "cpanelresult": {
        "apiversion": "2",
        "error": "Access denied",
        "data": {"reason": "Access denied", "result": "0"},
        "type": "text",
    }
}

#: Users the real server refuses for mail-suspension calls.
SYSTEM_USERS = frozenset({"root", "nobody", "cpanel"})


class ApiFailure(Exception):
    """An exception inside a WHM function; rendered as ``API failure: (XID …) <text>``."""


def xid() -> str:
    return "".join(random.choice(XID_ALPHABET) for _ in range(6))


def ok(command: str, data: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"command": command, "reason": "OK", "result": 1, "version": 1}}
    if data is not None:
        body["data"] = data
    return body


def not_ok(command: str, reason: str) -> dict[str, Any]:
    return {"metadata": {"command": command, "reason": reason, "result": 0, "version": 1}}


class WhmSandbox:
    """A WHM server's accounts, behind ``Authorization: whm USER:TOKEN``."""

    def __init__(self, *, username: str = "root", token: str = "sandbox-whm-token", name: str = "whm") -> None:
        self.name = name
        self.username = username
        self.token = token
        self.state = PanelState(name)
        self.ledger = self.state.ledger
        #: HTTP status for a wrong token: 403 observed; 401 is configurable ([U] in the reference).
        self.auth_failure_status = 403
        self.functions: dict[str, Callable[[dict[str, str]], dict[str, Any]]] = {
            "version": lambda p: ok("version", {"version": "11.126.0.5"}),
            "suspend_outgoing_email": self._outgoing("suspend_outgoing_email", "suspended"),
            "unsuspend_outgoing_email": self._outgoing("unsuspend_outgoing_email", "active"),
        }

    def add_account(self, user: str, domain: str | None = None) -> None:
        self.state.add_account(user, domain)

    def handle(self, request: Request) -> Reply:
        if not self._authorized(request.headers.get("authorization", "")):
            return Reply.json(ACCESS_DENIED, self.auth_failure_status)
        if not request.path.startswith("/json-api/"):
            return Reply(404, b"<html><body>HTTP 404: Not Found</body></html>", "text/html")
        function = request.path.removeprefix("/json-api/")
        params = dict(request.params)
        handler = self.functions.get(function)
        if handler is None:
            return Reply.json(not_ok(function, f"Unknown app ({function}) requested for this version (1) of the API."))
        try:
            return Reply.json(handler(params))
        except ApiFailure as exc:
            return Reply.json(not_ok(function, f"API failure: (XID {xid()}) {exc}"))

    def _authorized(self, header: str) -> bool:
        scheme, _, credentials = header.partition(" ")
        user, _, secret = credentials.partition(":")
        return scheme.lower() == "whm" and user == self.username and secret == self.token and bool(secret)

    def _require(self, params: dict[str, str], name: str) -> str:
        if name not in params:
            raise ApiFailure(f"Provide the “{name}” parameter.")
        if params[name] == "":
            raise ApiFailure(f"The value of “{name}” may not be empty.")
        return params[name]

    def _account(self, user: str) -> Any:
        account = self.state.accounts.get(user)
        if account is None:
            raise ApiFailure(f"You do not have a user named “{user}”.")
        return account

    def _outgoing(self, function: str, value: str) -> Callable[[dict[str, str]], dict[str, Any]]:
        def run(params: dict[str, str]) -> dict[str, Any]:
            user = self._require(params, "user")
            if user in SYSTEM_USERS:
                raise ApiFailure(f"“{user}” is not a valid user for this operation.")
            with self.state.lock:
                account = self._account(user)
                # Idempotent, as on the real server: suspending a suspended account succeeds again.
                self.state.set(account, "outgoing", value, target=user, function=function)
            return ok(function)

        return run
