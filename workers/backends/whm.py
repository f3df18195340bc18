"""cPanel WHM API 1 backend (port 2087, ``/json-api/<function>?api.version=1``).

Authentication is ``Authorization: whm USER:TOKEN``. Requests are POSTed as a form body, the way
cPanel's own client does; the sandbox and real servers accept GET query strings too.

Account-wide commands call WHM functions; mailbox and domain commands run as the owning cPanel
account, found with ``getdomainowner``, through ``uapi_cpanel`` (UAPI) or ``/json-api/cpanel``
(API 2, for ``passwdpop``).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from schemas.commands import AccountArgs, Command, CommandArgs, Scope, SuspensionArgs
from workers.backends.base import PanelResult
from workers.backends.envelopes import cpanel_api2, uapi_cpanel, whm_api1
from workers.backends.readback import (
    DKIM_READ,
    LIST_FORWARDERS,
    LIST_POPS,
    PASSWORD_UNREADABLE,
    SPF_READ,
    Read,
    ReadTable,
    Unreadable,
    domain_state,
    flag,
    forwarder_state,
    mailbox_state,
    want,
)
from workers.backends.transport import PanelHttp, json_body
from workers.backends.vocabulary import Call, resolve_call
from workers.errors import PanelRefused
from workers.settings_models import BackendConfig

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


ACCOUNT_READ = "accountsummary"
FORWARD_READ = "get_user_email_forward_destination"


def _mailbox_read(**fields: Any) -> Read:
    return Read(UAPI, LIST_POPS, want(**fields))


def _suspension_read(account: str | None, mailbox: str, value: bool) -> dict[Scope, Read | Unreadable]:
    """A mailbox's ``mailbox`` field (``list_pops_with_disk``), and an account's ``account`` field
    (``accountsummary``) where WHM has an account-level call."""
    found: dict[Scope, Read | Unreadable] = {"mailbox": _mailbox_read(**{mailbox: value})}
    if account:
        found["account"] = Read("", ACCOUNT_READ, want(**{account: value}))
    return found


def _destinations(value: Any) -> list[str]:
    return sorted(d.strip().lower() for d in str(value or "").split(",") if d.strip())


#: Why a WHM cell missing from :data:`READS` cannot be read back.
NOT_READABLE = "no published WHM or UAPI function shows this state"
#: command -> target scope -> how its effect is read back (see :mod:`workers.backends.readback`).
READS: ReadTable = {
    "suspend_outgoing": _suspension_read("outgoing_mail_suspended", "suspended_outgoing", True),
    "unsuspend_outgoing": _suspension_read("outgoing_mail_suspended", "suspended_outgoing", False),
    "suspend_incoming": {"mailbox": _mailbox_read(suspended_incoming=True),
                         "account": Unreadable("account-level incoming suspension is in no published read")},
    "unsuspend_incoming": {"mailbox": _mailbox_read(suspended_incoming=False),
                           "account": Unreadable("account-level incoming suspension is in no published read")},
    "suspend_login": _suspension_read(None, "suspended_login", True),
    "unsuspend_login": _suspension_read(None, "suspended_login", False),
    "hold_outgoing": _suspension_read("outgoing_mail_hold", "hold_outgoing", True),
    "release_outgoing": _suspension_read("outgoing_mail_hold", "hold_outgoing", False),
    "terminate_sessions": {"account": Unreadable("an action, not a state")},
    "set_forward_destination": {"account": Read("", FORWARD_READ, lambda a, c: {
        "forward_to": _destinations(",".join(a.forward_to))})},
    "addmail": {"mailbox": _mailbox_read(exists=True)},
    "delmail": {"mailbox": _mailbox_read(exists=False)},
    "passwd": {"mailbox": Unreadable(PASSWORD_UNREADABLE)},
    "addforward": {"mailbox": Read(UAPI, LIST_FORWARDERS, want(forwarder=True))},
    "delforward": {"mailbox": Read(UAPI, LIST_FORWARDERS, want(forwarder=False))},
    # modifyacct installs the panel's own record: any record proves HASSPF=1.
    "onspf": {"domain": Read(UAPI, SPF_READ, want(spf=True))},
    "offspf": {"domain": Read(UAPI, SPF_READ, want(spf=False))},
    "ondkim": {"domain": Read(UAPI, DKIM_READ, want(dkim=True))},
    "offdkim": {"domain": Read(UAPI, DKIM_READ, want(dkim=False))},
    "modifyacct": {"account": Unreadable("its fields are not all in a published read")},
}


class RecentOwner(threading.local):
    """The domain owner a worker thread looked up last, trusted for :data:`OWNER_MEMO_S` seconds
    (the read-back right after a change; an account does not change hands in between)."""

    def __init__(self) -> None:
        self.domain, self.owner, self.at = "", "", 0.0

    def keep(self, domain: str, owner: str) -> None:
        self.domain, self.owner, self.at = domain, owner, time.monotonic()

    def get(self, domain: str) -> str | None:
        fresh = time.monotonic() - self.at < OWNER_MEMO_S
        return self.owner if fresh and domain == self.domain else None


#: How long a looked-up domain owner is reused by the same thread.
OWNER_MEMO_S = 30.0


class WhmBackend:
    """A WHM server reached with a root or reseller API token."""

    kind = "whm"
    #: The login has a default (``root``), so a backends file may leave ``username`` out.
    username_means: str | None = None
    #: What each command calls on this kind (see :mod:`workers.backends.vocabulary`).
    calls = CALLS
    reads = READS
    not_readable = NOT_READABLE

    def __init__(self, config: BackendConfig, http: PanelHttp | None = None) -> None:
        self.name = config.name
        self.config = config
        self._http = http or PanelHttp(config)
        #: The owner this thread just looked up, so the read-back of its change costs one read.
        self._recent = RecentOwner()
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
        scope = args.scope()
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

    def read(self, read: Read, args: Any) -> dict[str, Any]:
        """Read the state ``read`` covers (:data:`READS`)."""
        if read.function == ACCOUNT_READ:
            return self.account_state(args.user)
        if read.function == FORWARD_READ:
            data = self.call(FORWARD_READ, {"user": args.user}).data
            return {"forward_to": _destinations(data.get("forward_to") if isinstance(data, dict) else "")}
        module, _, function = read.function.partition("::")
        if read.function in (SPF_READ, DKIM_READ):
            owner = self._recent.get(args.domain) or self.domain_owner(args.domain)
            return domain_state(read.function, self.call_uapi(owner, module, function, {"domain": args.domain}).data)
        address = str(args.email)
        local, _, domain = address.rpartition("@")
        owner = self._recent.get(domain) or self.domain_owner(domain)
        if read.function == LIST_FORWARDERS:
            data = self.call_uapi(owner, module, function, {"domain": domain}).data
            return forwarder_state(data, address, str(args.destination))
        data = self.call_uapi(owner, module, function, {"email": local, "domain": domain, "get_restrictions": "1"}).data
        return mailbox_state(data, address)

    def account_state(self, user: str) -> dict[str, Any]:
        """An account's outgoing suspension and hold (``accountsummary``)."""
        data = self.call(ACCOUNT_READ, {"user": user}).data
        accounts = data.get("acct") if isinstance(data, dict) else None
        if not isinstance(accounts, list) or not accounts or not isinstance(accounts[0], dict):
            return {"exists": False}
        found = accounts[0]
        return {"exists": True, "outgoing_mail_suspended": flag(found.get("outgoing_mail_suspended")),
                "outgoing_mail_hold": flag(found.get("outgoing_mail_hold"))}

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
        self._recent.keep(domain, str(user))
        return str(user)

    def _post(self, function: str, data: dict[str, str]) -> Any:
        response = self._http.request("POST", f"/json-api/{function}", headers=self._headers, data=data)
        return json_body(self.name, response)

    def check(self) -> PanelResult:
        return self.call("version", {})

    def close(self) -> None:
        self._http.close()
