"""cPanel UAPI backend (port 2083, ``/execute/<Module>/<function>``), one cPanel account per backend.

Authentication is ``Authorization: cpanel USER:TOKEN``: the token belongs to one cPanel account,
so only that account's mailboxes and domains can be changed. Answers are flat UAPI results.
"""

from __future__ import annotations

from typing import Any

from schemas.commands import Command
from workers.backends.base import PanelResult
from workers.backends.envelopes import uapi
from workers.backends.transport import PanelHttp, json_body
from workers.backends.vocabulary import Call, Scope, resolve_call
from workers.settings import BackendConfig


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
    "onspf": _domain("EmailAuth::install_spf_records"),
    "ondkim": _domain("EmailAuth::enable_dkim"),
    "offdkim": _domain("EmailAuth::disable_dkim"),
}


class CpanelBackend:
    """One cPanel account reached with its own API token."""

    kind = "cpanel"

    def __init__(self, config: BackendConfig) -> None:
        self.name = config.name
        self.config = config
        self._http = PanelHttp(config)
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
        module, _, function = call.function.partition("::")
        return self.call(module, function, call.params(args))

    def call(self, module: str, function: str, params: dict[str, str]) -> PanelResult:
        """Call one UAPI function and classify its flat answer."""
        response = self._http.request("POST", f"/execute/{module}/{function}", headers=self._headers, data=params)
        body: Any = json_body(self.name, response)
        return uapi(self.name, body)

    def check(self) -> PanelResult:
        return self.call("Email", "list_pops", {})

    def close(self) -> None:
        self._http.close()
