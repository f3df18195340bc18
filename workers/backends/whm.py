"""cPanel WHM API 1 backend (port 2087, ``/json-api/<function>?api.version=1``).

Authentication is ``Authorization: whm USER:TOKEN``. Requests are POSTed as a form body, the way
cPanel's own client does; the sandbox and real servers accept GET query strings too.

Account-wide commands call WHM functions; mailbox and domain commands run as the owning cPanel
account, found with ``getdomainowner``, through ``uapi_cpanel`` (UAPI) or ``/json-api/cpanel``
(API 2, for ``passwdpop``).
"""

from __future__ import annotations

from typing import Any

from schemas.commands import AccountArgs, Command, CommandArgs, SuspensionArgs
from workers.backends.base import PanelResult
from workers.backends.envelopes import cpanel_api2, uapi_cpanel, whm_api1
from workers.backends.transport import PanelHttp, json_body
from workers.backends.vocabulary import Call, Scope, resolve_call, scope_of
from workers.errors import PanelRefused
from workers.settings import BackendConfig

UAPI = "uapi_cpanel"
API2 = "API 2"


def _user(a: Any) -> dict[str, str]:
    return {"user": a.user}


def _email(a: Any) -> dict[str, str]:
    return {"email": a.email}


def _incoming_account(a: Any) -> dict[str, str]:
    # UAPI keys incoming suspension on the account itself when ``email`` is the cPanel user.
    return {"email": a.user}


def _spf(value: str) -> Call:
    return Call("", "modifyacct", lambda a: {"HASSPF": value}, note=f"HASSPF={value}")


def _dkim(value: str) -> Call:
    return Call("", "modifyacct", lambda a: {"HASDKIM": value}, note=f"HASDKIM={value}")


def _suspension(whm_function: str | None, uapi_function: str, *, account_incoming: bool = False) -> dict[Scope, Call]:
    calls: dict[Scope, Call] = {}
    if whm_function:
        calls["account"] = Call("", whm_function, _user)
    elif account_incoming:
        calls["account"] = Call(UAPI, uapi_function, _incoming_account)
    calls["mailbox"] = Call(UAPI, uapi_function, _email)
    return calls


#: command -> target scope -> WHM call (see :mod:`workers.backends.vocabulary`).
CALLS: dict[str, dict[Scope, Call]] = {
    "suspend_outgoing": _suspension("suspend_outgoing_email", "Email::suspend_outgoing"),
    "unsuspend_outgoing": _suspension("unsuspend_outgoing_email", "Email::unsuspend_outgoing"),
    "suspend_incoming": _suspension(None, "Email::suspend_incoming", account_incoming=True),
    "unsuspend_incoming": _suspension(None, "Email::unsuspend_incoming", account_incoming=True),
    "suspend_login": _suspension(None, "Email::suspend_login"),
    "unsuspend_login": _suspension(None, "Email::unsuspend_login"),
    "hold_outgoing": _suspension("hold_outgoing_email", "Email::hold_outgoing"),
    "release_outgoing": _suspension("release_outgoing_email", "Email::release_outgoing"),
    "terminate_sessions": {"account": Call("", "terminate_cpuser_mailbox_sessions", lambda a: {"username": a.user})},
    "set_forward_destination": {
        "account": Call("", "set_user_email_forward_destination",
                        lambda a: {"user": a.user, "forward_to": ",".join(a.forward_to)}),
    },
    "addmail": {"mailbox": Call(UAPI, "Email::add_pop", lambda a: {
        "email": a.local_part, "domain": a.domain, "password": a.password, "quota": str(a.quota)})},
    "delmail": {"mailbox": Call(UAPI, "Email::delete_pop", lambda a: {"email": a.local_part, "domain": a.domain})},
    "passwd": {"mailbox": Call(API2, "Email::passwdpop", lambda a: {
        "email": a.local_part, "domain": a.domain, "password": a.password})},
    "addforward": {"mailbox": Call(UAPI, "Email::add_forwarder", lambda a: {
        "domain": a.domain, "email": a.local_part, "fwdopt": "fwd", "fwdemail": a.destination})},
    "delforward": {"mailbox": Call(UAPI, "Email::delete_forwarder", lambda a: {
        "address": a.email, "forwarder": a.destination})},
    "onspf": {"domain": _spf("1")},
    "offspf": {"domain": _spf("0")},
    "ondkim": {"domain": _dkim("1")},
    "offdkim": {"domain": _dkim("0")},
    "modifyacct": {"account": Call("", "modifyacct", lambda a: a.changes())},
}


class WhmBackend:
    """A WHM server reached with a root or reseller API token."""

    kind = "whm"
    #: What each command calls on this kind (see :mod:`workers.backends.vocabulary`).
    calls = CALLS

    def __init__(self, config: BackendConfig) -> None:
        self.name = config.name
        self.config = config
        self._http = PanelHttp(config)
        self._headers = {
            "Authorization": f"whm {config.username}:{config.token.get_secret_value()}",
            "Accept": "application/json",
        }

    def __repr__(self) -> str:
        return f"WhmBackend(name={self.name!r}, url={self.config.url!r})"

    def supports(self, command: str) -> bool:
        return command in CALLS

    def execute(self, command: Command) -> PanelResult:
        call, args = resolve_call(CALLS, command, self.kind)
        scope = scope_of(args)
        params = call.params(args)
        if call.via == "":
            if call.function == "modifyacct":
                params = {"user": self._owner_of(args, scope), **params}
            return self.call(call.function, params)
        owner = self._owner_of(args, scope)
        module, _, function = call.function.partition("::")
        if call.via == API2:
            return self.call_api2(owner, module, function, params)
        return self.call_uapi(owner, module, function, params)

    def _owner_of(self, args: CommandArgs, scope: Scope) -> str:
        if isinstance(args, AccountArgs | SuspensionArgs) and scope == "account":
            return str(args.user)
        return self.domain_owner(args.target().rpartition("@")[2])

    def call(self, function: str, params: dict[str, str]) -> PanelResult:
        """Call one WHM API 1 function and classify its answer."""
        return whm_api1(self.name, self._post(function, {"api.version": "1", **params}))

    def call_uapi(self, user: str, module: str, function: str, params: dict[str, str]) -> PanelResult:
        """Run a UAPI function as ``user`` through ``uapi_cpanel``; the inner status decides."""
        body = self._post("uapi_cpanel", {
            "api.version": "1", "cpanel.user": user, "cpanel.module": module, "cpanel.function": function, **params,
        })
        return uapi_cpanel(self.name, body)

    def call_api2(self, user: str, module: str, function: str, params: dict[str, str]) -> PanelResult:
        """Run a cPanel API 2 function as ``user`` through ``/json-api/cpanel``."""
        body = self._post("cpanel", {
            "cpanel_jsonapi_user": user, "cpanel_jsonapi_apiversion": "2",
            "cpanel_jsonapi_module": module, "cpanel_jsonapi_func": function, **params,
        })
        return cpanel_api2(self.name, body)

    def domain_owner(self, domain: str) -> str:
        """The cPanel account that owns a domain (``getdomainowner``)."""
        result = self.call("getdomainowner", {"domain": domain})
        data = result.data
        user = data.get("user") if isinstance(data, dict) else None
        if not user:
            raise PanelRefused(f"{self.name}: no account owns the domain “{domain}”")
        return str(user)

    def _post(self, function: str, data: dict[str, str]) -> Any:
        response = self._http.request("POST", f"/json-api/{function}", headers=self._headers, data=data)
        return json_body(self.name, response)

    def check(self) -> PanelResult:
        return self.call("version", {})

    def suspension_state(self, target: str, aspect: str) -> bool | None:
        """Whether ``aspect`` of a cPanel account is suspended now (``accountsummary``).

        ``None`` when this backend cannot read it (mailbox targets, other aspects). Added for
        ``mailops reconcile``; read-only.
        """
        if aspect != "outgoing" or "@" in target:
            return None
        data = self.call("accountsummary", {"user": target}).data
        accounts = data.get("acct") if isinstance(data, dict) else None
        if not isinstance(accounts, list) or not accounts or not isinstance(accounts[0], dict):
            return None
        return bool(int(accounts[0].get("outgoing_mail_suspended") or 0))

    def close(self) -> None:
        self._http.close()
