"""cPanel UAPI backend (port 2083, ``/execute/<Module>/<function>``), one cPanel account per backend.

Authentication is ``Authorization: cpanel USER:TOKEN``: the token belongs to one cPanel account,
so only that account's mailboxes and domains can be changed. Answers are flat UAPI results.

``onspf`` installs the backend's ``spf_record`` (``EmailAuth::install_spf_records`` requires a
record); the read-back shows the record in place after it. With ``spf_read_first`` it reads the
domain's current record first (``EmailAuth::validate_current_spfs``): the same record is
``already`` so (no install), a different one is replaced and named in the event
(``details.replaced``).
"""

from __future__ import annotations

from typing import Any

from schemas.commands import Command, Scope
from workers.backends import readback
from workers.backends.base import PanelResult
from workers.backends.envelopes import uapi
from workers.backends.readback import (
    DKIM_READ,
    LIST_FORWARDERS,
    LIST_POPS,
    PASSWORD_UNREADABLE,
    Read,
    ReadTable,
    Unreadable,
    current_spf,
    domain_state,
    forwarder_state,
    mailbox_state,
    want,
)
from workers.backends.transport import PanelHttp, json_body
from workers.backends.vocabulary import Call, resolve_call
from workers.errors import PanelAuthRejected, PanelRefused
from workers.settings_models import BackendConfig

#: The UAPI function ``onspf`` calls, and the one it reads the current record with.
SPF_INSTALL = "EmailAuth::install_spf_records"
SPF_READ = readback.SPF_READ


def _email(function: str) -> dict[Scope, Call]:
    return {"mailbox": Call("", function, lambda a: {"email": a.email})}


def _domain(function: str) -> dict[Scope, Call]:
    return {"domain": Call("", function, lambda a: {"domain": a.domain})}


#: command -> target scope -> UAPI call (see :mod:`workers.backends.vocabulary`).
CALLS: dict[str, dict[Scope, Call]] = {
    "suspend_outgoing": _email("Email::suspend_outgoing"),
    "unsuspend_outgoing": _email("Email::unsuspend_outgoing"),
    "suspend_incoming": _email("Email::suspend_incoming"),
    "unsuspend_incoming": _email("Email::unsuspend_incoming"),
    "suspend_login": _email("Email::suspend_login"),
    "unsuspend_login": _email("Email::unsuspend_login"),
    "hold_outgoing": _email("Email::hold_outgoing"),
    "release_outgoing": _email("Email::release_outgoing"),
    "addmail": {"mailbox": Call("", "Email::add_pop", lambda a: {
        "email": a.local_part, "domain": a.domain, "password": a.password, "quota": str(a.quota)})},
    "delmail": {"mailbox": Call("", "Email::delete_pop", lambda a: {"email": a.local_part, "domain": a.domain})},
    "passwd": {"mailbox": Call("", "Email::passwd_pop", lambda a: {
        "email": a.local_part, "domain": a.domain, "password": a.password})},
    "addforward": {"mailbox": Call("", "Email::add_forwarder", lambda a: {
        "domain": a.domain, "email": a.local_part, "fwdopt": "fwd", "fwdemail": a.destination})},
    "delforward": {"mailbox": Call("", "Email::delete_forwarder", lambda a: {
        "address": a.email, "forwarder": a.destination})},
    "onspf": {"domain": Call("", SPF_INSTALL, lambda a: {"domain": a.domain}, note="record=spf_record")},
    "ondkim": _domain("EmailAuth::enable_dkim"),
    "offdkim": _domain("EmailAuth::disable_dkim"),
}


def _mailbox_read(**fields: Any) -> dict[Scope, Read]:
    return {"mailbox": Read("", LIST_POPS, want(**fields))}


#: Why a cPanel cell missing from :data:`READS` cannot be read back.
NOT_READABLE = "no published UAPI function shows this state"
#: command -> target scope -> how its effect is read back (see :mod:`workers.backends.readback`).
READS: ReadTable = {
    "suspend_outgoing": _mailbox_read(suspended_outgoing=True),
    "unsuspend_outgoing": _mailbox_read(suspended_outgoing=False),
    "suspend_incoming": _mailbox_read(suspended_incoming=True),
    "unsuspend_incoming": _mailbox_read(suspended_incoming=False),
    "suspend_login": _mailbox_read(suspended_login=True),
    "unsuspend_login": _mailbox_read(suspended_login=False),
    "hold_outgoing": _mailbox_read(hold_outgoing=True),
    "release_outgoing": _mailbox_read(hold_outgoing=False),
    "addmail": _mailbox_read(exists=True),
    "delmail": _mailbox_read(exists=False),
    "passwd": {"mailbox": Unreadable(PASSWORD_UNREADABLE)},
    "addforward": {"mailbox": Read("", LIST_FORWARDERS, want(forwarder=True))},
    "delforward": {"mailbox": Read("", LIST_FORWARDERS, want(forwarder=False))},
    "onspf": {"domain": Read("", SPF_READ, lambda a, config: {"record": config.spf_record})},
    "ondkim": {"domain": Read("", DKIM_READ, want(dkim=True))},
    "offdkim": {"domain": Read("", DKIM_READ, want(dkim=False))},
}


def _split(function: str) -> tuple[str, str]:
    module, _, name = function.partition("::")
    return module, name


class CpanelBackend:
    """One cPanel account reached with its own API token."""

    kind = "cpanel"
    #: What ``username`` is; a backends file must give it.
    username_means: str | None = "the cPanel account name"
    #: What each command calls on this kind (see :mod:`workers.backends.vocabulary`).
    calls = CALLS
    reads = READS
    not_readable = NOT_READABLE

    def __init__(self, config: BackendConfig, http: PanelHttp | None = None) -> None:
        self.name = config.name
        self.config = config
        self._http = http or PanelHttp(config)
        self._headers = {
            "Authorization": f"cpanel {config.username}:{config.token.get_secret_value()}",
            "Accept": "application/json",
        }

    def __repr__(self) -> str:
        return f"CpanelBackend(name={self.name!r}, url={self.config.url!r})"

    def supports(self, command: str) -> bool:
        return command in CALLS

    def execute(self, command: Command) -> PanelResult:
        call, args = resolve_call(CALLS, command, self.kind)
        if call.function == SPF_INSTALL:
            return self.install_spf(call.params(args))
        module, _, function = call.function.partition("::")
        return self.call(module, function, call.params(args))

    def install_spf(self, params: dict[str, str]) -> PanelResult:
        """Install the configured SPF record (with ``spf_read_first``: unless the domain has it
        already, naming what it replaces)."""
        record = self.config.spf_record
        details: dict[str, Any] = {"record": record}
        if not self.config.spf_read_first:
            result = self.call(*_split(SPF_INSTALL), {**params, "record": record})
            return PanelResult(already=result.already, message=f"SPF record {record!r} installed", details=details)
        try:
            read = {k: v for k, v in params.items() if k == "domain"}
            current = current_spf(self.call(*_split(SPF_READ), read).data)
        except PanelAuthRejected:
            raise
        except PanelRefused as exc:  # not readable here: install, and say the old record is unknown
            current, details["replaced"] = None, f"unknown (could not read it: {exc})"
        if current == record:
            return PanelResult(already=True, message=f"SPF record already {record!r}", details=details)
        result = self.call(*_split(SPF_INSTALL), {**params, "record": record})
        if current:
            details["replaced"] = current
        message = f"SPF record {record!r} installed" + (f", replacing {current!r}" if current else "")
        return PanelResult(already=result.already, message=message, details=details)

    def read(self, read: Read, args: Any) -> dict[str, Any]:
        """Read the state ``read`` covers (:data:`READS`)."""
        module, function = _split(read.function)
        if read.function in (SPF_READ, DKIM_READ):
            return domain_state(read.function, self.call(module, function, {"domain": args.domain}).data)
        address = str(args.email)
        local, _, domain = address.rpartition("@")
        if read.function == LIST_FORWARDERS:
            return forwarder_state(self.call(module, function, {"domain": domain}).data, address, str(args.destination))
        data = self.call(module, function, {"email": local, "domain": domain, "get_restrictions": "1"}).data
        return mailbox_state(data, address)

    def call(self, module: str, function: str, params: dict[str, str]) -> PanelResult:
        """Call one UAPI function and classify its flat answer."""
        response = self._http.request("POST", f"/execute/{module}/{function}", headers=self._headers, data=params)
        body: Any = json_body(self.name, response)
        return uapi(self.name, body)

    def check(self) -> PanelResult:
        return self.call("Email", "list_pops", {})

    def close(self) -> None:
        self._http.close()
