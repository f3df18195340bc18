"""WHM API 1 simulator: ``/json-api/<function>`` with the real envelopes and error texts.

Answers follow WHM's: a function failure is HTTP 200 with
``metadata.result: 0`` and ``API failure: (XID ab3k9z) ...`` reasons with curly quotes; bad
credentials are HTTP 403 with a ``cpanelresult`` "Access denied" body.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from workers.sandbox.cpanel import ACCESS_DENIED, Uapi
from workers.sandbox.server import Reply, Request
from workers.sandbox.state import PanelState, fingerprint

#: XID alphabet of ``Cpanel::Exception`` (no i, l, o, 0, 1).
XID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"

#: Users the real server refuses for mail-suspension calls.
SYSTEM_USERS = frozenset({"root", "nobody", "cpanel"})


class _PlainFailure(Exception):
    """A WHM failure reason without the ``API failure: (XID …)`` prefix (``modifyacct`` without user)."""


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
            "hold_outgoing_email": self._outgoing("hold_outgoing_email", True, attr="hold"),
            "release_outgoing_email": self._outgoing("release_outgoing_email", False, attr="hold"),
            "getdomainowner": self._getdomainowner,
            "accountsummary": self._accountsummary,
            "get_user_email_forward_destination": self._get_forward_destination,
            "terminate_cpuser_mailbox_sessions": self._terminate_sessions,
            "set_user_email_forward_destination": self._set_forward_destination,
            "modifyacct": self._modifyacct,
            "uapi_cpanel": self._uapi_cpanel,
        }
        self.uapi = Uapi(self.state)

    def add_account(self, user: str, domain: str | None = None) -> None:
        self.state.add_account(user, domain)

    def handle(self, request: Request) -> Reply:
        if not self._authorized(request.headers.get("authorization", "")):
            return Reply.json(ACCESS_DENIED, self.auth_failure_status)
        if not request.path.startswith("/json-api/"):
            return Reply(404, b"<html><body>HTTP 404: Not Found</body></html>", "text/html")
        function = request.path.removeprefix("/json-api/")
        params = dict(request.params)
        if function == "cpanel":
            return Reply.json(self._api2(params))
        if function == "modifyacct" and params.get("api.version") != "1":
            return Reply.json(self._modifyacct_api0(params))
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

    def _outgoing(self, function: str, value: Any, *, attr: str = "outgoing") -> Callable[[dict[str, str]], dict[str, Any]]:
        def run(params: dict[str, str]) -> dict[str, Any]:
            user = self._require(params, "user")
            if user in SYSTEM_USERS:
                raise ApiFailure(f"“{user}” is not a valid user for this operation.")
            with self.state.lock:
                account = self._account(user)
                # Idempotent, as on the real server: suspending a suspended account succeeds again.
                self.state.set(account, attr, value, target=user, function=function)
            return ok(function)

        return run

    def function_of(self, request: Request) -> str:
        function = request.path.removeprefix("/json-api/")
        if function == "uapi_cpanel":
            return f"{request.params.get('cpanel.module', '')}::{request.params.get('cpanel.function', '')}"
        if function == "cpanel":
            return f"{request.params.get('cpanel_jsonapi_module', '')}::{request.params.get('cpanel_jsonapi_func', '')}"
        return function

    def _accountsummary(self, params: dict[str, str]) -> dict[str, Any]:
        """One account's summary, with its outgoing mail suspension and hold as 0/1."""
        user = self._require(params, "user")
        with self.state.lock:
            account = self._account(user)
            return ok("accountsummary", {"acct": [{
                "user": user, "domain": account.domain, "suspended": 0,
                "outgoing_mail_suspended": int(account.outgoing == "suspended"),
                "outgoing_mail_hold": int(account.hold)}]})

    def _get_forward_destination(self, params: dict[str, str]) -> dict[str, Any]:
        user = self._require(params, "user")
        with self.state.lock:
            return ok("get_user_email_forward_destination", {"forward_to": self._account(user).forward_to})

    def _getdomainowner(self, params: dict[str, str]) -> dict[str, Any]:
        domain = self._require(params, "domain")
        return ok("getdomainowner", {"user": self.state.owner_of(domain)})

    def _terminate_sessions(self, params: dict[str, str]) -> dict[str, Any]:
        user = self._require(params, "username")
        with self.state.lock:
            account = self._account(user)
            self.state.set(account, "sessions_terminated", account.sessions_terminated + 1, target=user,
                           function="terminate_cpuser_mailbox_sessions")
        return ok("terminate_cpuser_mailbox_sessions")

    def _set_forward_destination(self, params: dict[str, str]) -> dict[str, Any]:
        user = self._require(params, "user")
        if "forward_to" not in params:
            raise ApiFailure("Provide the “forward_to” parameter.")
        destinations = [d.strip() for d in params["forward_to"].split(",") if d.strip()]
        for dest in destinations:
            if not (dest.startswith("|") or dest in self.state.accounts or "@" in dest):
                raise ApiFailure(f"“{dest}” in the “forward” parameter is not valid.")
        with self.state.lock:
            account = self._account(user)
            self.state.set(account, "forward_to", ",".join(destinations), target=user,
                           function="set_user_email_forward_destination")
        return ok("set_user_email_forward_destination", {})

    def _apply_modifyacct(self, params: dict[str, str]) -> dict[str, str]:
        user = params.get("user", "")
        if not user:
            raise _PlainFailure("Must at least specify a user to modify.")
        with self.state.lock:
            account = self._account(user)
            for name, value in params.items():
                if name in ("user", "api.version"):
                    continue
                if name in ("HASSPF", "HASDKIM"):
                    for domain in self.state.domains.values():
                        if domain.owner == user:
                            self.state.set(domain, "spf" if name == "HASSPF" else "dkim", value == "1",
                                           target=domain.name, function="modifyacct")
                # Unknown or mis-cased names are ignored, as on the real server; known ones are stored.
                self.state.set(account.settings, name, value, target=user, function="modifyacct")
            return {"domain": account.domain, "user": user, "setshell": "unmodified",
                    "cpuser": {k: str(v) for k, v in account.settings.items()}}

    def _modifyacct(self, params: dict[str, str]) -> dict[str, Any]:
        try:
            newcfg = self._apply_modifyacct(params)
        except _PlainFailure as exc:
            return not_ok("modifyacct", str(exc))
        body = ok("modifyacct", newcfg)
        body["metadata"]["reason"] = "Account Modified"
        body["metadata"]["output"] = {"messages": [], "warnings": []}
        return body

    def _modifyacct_api0(self, params: dict[str, str]) -> dict[str, Any]:
        """Legacy WHM API 0 (no ``api.version``): ``{"result": [{"status", "statusmsg", "newcfg"}]}``."""
        try:
            newcfg = self._apply_modifyacct(params)
        except (_PlainFailure, ApiFailure) as exc:
            return {"result": [{"status": 0, "statusmsg": str(exc), "messages": [], "warnings": []}]}
        return {"result": [{"status": 1, "statusmsg": "Account Modified", "messages": [], "warnings": [], "newcfg": newcfg}]}

    def _uapi_cpanel(self, params: dict[str, str]) -> dict[str, Any]:
        user = self._require(params, "cpanel.user")
        module = self._require(params, "cpanel.module")
        function = self._require(params, "cpanel.function")
        self._account(user)
        args = {k: v for k, v in params.items() if not k.startswith("cpanel.") and k != "api.version"}
        # The WHM layer succeeded: metadata.result is 1 even when the UAPI call failed.
        return ok("uapi_cpanel", {"uapi": self.uapi.run(user, module, function, args)})

    def _api2(self, params: dict[str, str]) -> dict[str, Any]:
        """cPanel API 2 through ``/json-api/cpanel`` (only ``Email::passwdpop``)."""
        user = params.get("cpanel_jsonapi_user", "")
        module = params.get("cpanel_jsonapi_module", "")
        func = params.get("cpanel_jsonapi_func", "")
        head: dict[str, Any] = {"apiversion": 2, "func": func, "module": module}
        if user not in self.state.accounts:
            return {"cpanelresult": {**head, "data": {"reason": "User parameter is invalid or was not supplied", "result": "0"},
                                     "error": "User parameter is invalid or was not supplied", "event": {"result": 0}}}
        if (module, func) != ("Email", "passwdpop"):
            error = f"Could not find function '{func}' in module '{module}'"
            return {"cpanelresult": {**head, "data": [], "error": error, "event": {"result": 0, "reason": error}}}
        address = f"{params.get('email', '')}@{params.get('domain', '')}".lower()
        with self.state.lock:
            mailbox = self.state.mailboxes.get(address)
            if mailbox is None or self.state.owner_of(mailbox.domain) != user:
                reason = f"You do not have an email account named “{address}”."
                return {"cpanelresult": {**head, "data": [{"reason": reason, "result": 0}], "error": reason,
                                         "event": {"result": 1}}}
            self.state.set(mailbox, "password", fingerprint(params.get("password", "")), target=address,
                           function="passwdpop")
        return {"cpanelresult": {**head, "data": [{"reason": "", "result": 1}], "event": {"result": 1},
                                 "preevent": {"result": 1}, "postevent": {"result": 1}}}
