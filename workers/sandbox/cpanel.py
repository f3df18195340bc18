"""cPanel UAPI simulator: ``/execute/<Module>/<function>`` behind ``Authorization: cpanel USER:TOKEN``.

:class:`Uapi` runs the functions on a :class:`PanelState` as one cPanel account and returns the
flat UAPI result (``status``, ``data``, ``errors``, ``messages``, ``warnings``, ``metadata``;
empty lists are ``null``; error texts without XID). The WHM sandbox reuses it for ``uapi_cpanel``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from workers.constants import DEFAULT_SPF_RECORD
from workers.sandbox.server import Reply, Request
from workers.sandbox.state import Mailbox, PanelState, fingerprint, forward_line

EMAIL = re.compile(r"^[A-Za-z0-9!#$%*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$")
#: Bad credentials on any cPanel/WHM port (HTTP 403, observed).
ACCESS_DENIED = {
    "cpanelresult": {
        "apiversion": "2",
        "error": "Access denied",
        "data": {"reason": "Access denied", "result": "0"},
        "type": "text",
    }
}
TOKEN_ONLY_UAPI = b"Token authentication allows access to UAPI or API 2 calls only."


class UapiError(Exception):
    """A UAPI function failure; its text goes into ``errors[]``."""


def result(data: Any = None, *, status: int = 1, errors: list[str] | None = None) -> dict[str, Any]:
    """A flat UAPI result, with ``null`` for empty lists as the real server sends."""
    return {"status": status, "data": data, "errors": errors or None, "messages": None, "warnings": None, "metadata": {}}


Function = Callable[[str, dict[str, str]], Any]


class Uapi:
    """UAPI ``Email`` and ``EmailAuth`` functions on one panel state, run as a cPanel account."""

    def __init__(self, state: PanelState) -> None:
        self.state = state
        self.functions: dict[str, dict[str, Function]] = {
            "Email": {
                "suspend_outgoing": self._mailbox_flag("outgoing", "suspended", data=1),
                "unsuspend_outgoing": self._mailbox_flag("outgoing", "active"),
                "suspend_incoming": self._mailbox_flag("incoming", "suspended", account_level=True),
                "unsuspend_incoming": self._mailbox_flag("incoming", "active", data=1, account_level=True),
                "suspend_login": self._mailbox_flag("login", "suspended"),
                "unsuspend_login": self._mailbox_flag("login", "active"),
                "hold_outgoing": self._mailbox_flag("hold", True),
                "release_outgoing": self._mailbox_flag("hold", False),
                "add_pop": self._add_pop,
                "delete_pop": self._delete_pop,
                "passwd_pop": self._passwd_pop,
                "add_forwarder": self._add_forwarder,
                "delete_forwarder": self._delete_forwarder,
                "list_pops": lambda user, p: [{"email": m.address} for m in self._mailboxes_of(user)],
                "list_pops_with_disk": self._list_pops_with_disk,
                "list_forwarders": self._list_forwarders,
            },
            "EmailAuth": {
                "install_spf_records": self._install_spf_records,
                "validate_current_spfs": self._validate_current_spfs,
                "validate_current_dkims": self._validate_current_dkims,
                "enable_dkim": self._domain_flag("dkim", True),
                "disable_dkim": self._domain_flag("dkim", False),
            },
        }

    def run(self, user: str, module: str, function: str, params: dict[str, str]) -> dict[str, Any]:
        functions = self.functions.get(module)
        if functions is None:
            return result(status=0, errors=[f"Failed to load module “{module}”: Can’t locate Cpanel/API/{module}.pm."])
        handler = functions.get(function)
        if handler is None:
            return result(status=0, errors=[f"The system could not find the function “{function}” in the module “{module}”."])
        try:
            with self.state.lock:
                return result(handler(user, params))
        except UapiError as exc:
            return result(status=0, errors=[str(exc)])

    # -- helpers ---------------------------------------------------------------------------

    def _mailboxes_of(self, user: str) -> list[Mailbox]:
        return [m for m in self.state.mailboxes.values() if self.state.owner_of(m.domain) == user]

    def _address(self, user: str, params: dict[str, str], name: str = "email") -> str:
        value = params.get(name, "")
        if not value:
            raise UapiError(f"You must specify the “{name}” parameter.")
        if "@" not in value and params.get("domain"):
            value = f"{value}@{params['domain']}"
        if not EMAIL.match(value):
            raise UapiError("Please use a valid email format.")
        return value.lower()

    def _mailbox(self, user: str, params: dict[str, str]) -> Mailbox:
        address = self._address(user, params)
        mailbox = self.state.mailboxes.get(address)
        if mailbox is None or self.state.owner_of(mailbox.domain) != user:
            raise UapiError(f"You do not have an email account named “{address}”.")
        return mailbox

    def _owned_domain(self, user: str, domain: str) -> str:
        domain = domain.lower()
        if not domain:
            raise UapiError("You must specify the “domain” parameter.")
        if self.state.owner_of(domain) != user:
            raise UapiError(f"You do not control a domain named “{domain}”.")
        return domain

    # -- functions -------------------------------------------------------------------------

    def _mailbox_flag(self, attr: str, value: Any, *, data: Any = None, account_level: bool = False) -> Function:
        def run(user: str, params: dict[str, str]) -> Any:
            if account_level and params.get("email", user) == user:
                self.state.set(self.state.accounts[user], attr, value, target=user, function=attr)
                return data
            mailbox = self._mailbox(user, params)
            changed = self.state.set(mailbox, attr, value, target=mailbox.address, function=attr)
            return (1 if changed else 0) if data is not None else None

        return run

    def _domain_flag(self, attr: str, value: bool) -> Function:
        def run(user: str, params: dict[str, str]) -> Any:
            domain = self._owned_domain(user, params.get("domain", ""))
            self.state.set(self.state.domains[domain], attr, value, target=domain, function=attr)
            return [{"domain": domain, "status": 1, "msg": "OK"}]

        return run

    def _install_spf_records(self, user: str, params: dict[str, str]) -> Any:
        """``record`` is required, as the published spec says (uapi-email-params: domain, record)."""
        domain = self._owned_domain(user, params.get("domain", ""))
        record = params.get("record", "")
        if not record:
            raise UapiError("You must specify the “record” parameter.")
        if not record.startswith("v=spf1"):
            raise UapiError(f"“{record}” is not a valid SPF record.")
        found = self.state.domains[domain]
        self.state.set(found, "spf", True, target=domain, function="install_spf_records")
        self.state.set(found, "spf_record", record, target=domain, function="install_spf_records")
        return [{"domain": domain, "status": 1, "msg": "OK"}]

    def _validate_current_spfs(self, user: str, params: dict[str, str]) -> Any:
        """The domain's SPF record as the server reads it. The exact shape of ``data`` is not in the
        stored spec ([U]); this one (``current.value``) is what the cPanel backend parses."""
        domain = self._owned_domain(user, params.get("domain", ""))
        found = self.state.domains[domain]
        # WHM's modifyacct HASSPF=1 turns SPF on without naming a record: the panel's own default.
        record = (found.spf_record or DEFAULT_SPF_RECORD) if found.spf else ""
        return [{"domain": domain, "state": "VALID" if record else "MISSING",
                 "current": {"value": record} if record else None}]

    def _validate_current_dkims(self, user: str, params: dict[str, str]) -> Any:
        """The domain's DKIM record: ``state`` ``VALID`` with a ``current`` record, or ``MISSING``
        (the shape of ``current`` is not in the stored spec [U])."""
        domain = self._owned_domain(user, params.get("domain", ""))
        on = self.state.domains[domain].dkim
        current = {"name": f"default._domainkey.{domain}", "value": "v=DKIM1; k=rsa; p=MIIB"} if on else None
        return [{"domain": domain, "state": "VALID" if on else "MISSING", "current": current}]

    def _list_pops_with_disk(self, user: str, params: dict[str, str]) -> Any:
        """The account's mailboxes, filtered by ``domain`` and ``email`` (local part or address);
        the outgoing suspension and hold fields only with ``get_restrictions=1``, as published."""
        domain, wanted = params.get("domain", "").lower(), params.get("email", "").lower()
        restrictions = params.get("get_restrictions") == "1"
        found = []
        for mailbox in self._mailboxes_of(user):
            local = mailbox.address.partition("@")[0]
            if (domain and mailbox.domain != domain) or (wanted and wanted not in (local, mailbox.address)):
                continue
            item: dict[str, Any] = {
                "email": mailbox.address, "login": mailbox.address, "user": local, "domain": mailbox.domain,
                "diskquota": mailbox.quota if mailbox.quota != "0" else "unlimited",
                "_diskquota": str(int(mailbox.quota) * 1024 * 1024) if mailbox.quota.isdigit() else "0",
                "diskused": 0, "_diskused": "0",
                "suspended_incoming": int(mailbox.incoming == "suspended"), "suspended_login": int(mailbox.login == "suspended"),
            }
            if restrictions:
                item["suspended_outgoing"] = int(mailbox.outgoing == "suspended")
                item["hold_outgoing"] = int(mailbox.hold)
            found.append(item)
        return found

    def _list_forwarders(self, user: str, params: dict[str, str]) -> Any:
        """The domain's forwarders: ``dest`` is the address forwarded, ``forward`` where to."""
        domain = self._owned_domain(user, params.get("domain", ""))
        found = []
        for key in sorted(self.state.forwarders):
            source, target = forward_line(key)
            if source.rpartition("@")[2] == domain:
                found.append({"dest": source, "forward": target, "html_dest": source, "html_forward": target,
                              "uri_dest": source.replace("@", "%40"), "uri_forward": target.replace("@", "%40")})
        return found

    def _add_pop(self, user: str, params: dict[str, str]) -> Any:
        local = params.get("email", "")
        if local == "cpanel":
            raise UapiError("The “cpanel” email account is reserved.")
        domain = params.get("domain") or (local.rpartition("@")[2] if "@" in local else self.state.accounts[user].domain)
        address = self._address(user, {"email": local.rpartition("@")[0] or local, "domain": domain})
        self._owned_domain(user, address.rpartition("@")[2])
        if not params.get("password"):
            raise UapiError("You must specify the “password” parameter.")
        if address in self.state.mailboxes:
            raise UapiError(f"The account “{address}” already exists!")
        quota = params.get("quota", "0")
        self.state.put(self.state.mailboxes, address, Mailbox(address, fingerprint(params["password"]), quota),
                       kind="mailbox", function="add_pop")
        return address.replace("@", "+")

    def _delete_pop(self, user: str, params: dict[str, str]) -> Any:
        mailbox = self._mailbox(user, params)
        self.state.remove(self.state.mailboxes, mailbox.address, kind="mailbox", function="delete_pop")
        return None

    def _passwd_pop(self, user: str, params: dict[str, str]) -> Any:
        mailbox = self._mailbox(user, params)
        if not params.get("password"):
            raise UapiError("You must specify the “password” parameter.")
        self.state.set(mailbox, "password", fingerprint(params["password"]), target=mailbox.address, function="passwd_pop")
        return None

    def _add_forwarder(self, user: str, params: dict[str, str]) -> Any:
        source = self._address(user, params)
        self._owned_domain(user, source.rpartition("@")[2])
        if params.get("fwdopt") != "fwd":
            raise UapiError("The “fwdopt” parameter must be one of: fwd, fail, blackhole, pipe, system.")
        targets = [t.strip().lower() for t in params.get("fwdemail", "").split(",") if t.strip()]
        if not targets or not all(EMAIL.match(t) for t in targets):
            raise UapiError("Please use a valid email format.")
        for target in targets:
            self.state.put(self.state.forwarders, self.state.forwarder_key(source, target), "fwd", kind="forwarder",
                           function="add_forwarder")
        local, _, domain = source.partition("@")
        return [{"domain": domain, "email": source, "forward": t} for t in targets]

    def _delete_forwarder(self, user: str, params: dict[str, str]) -> Any:
        source = self._address(user, params, "address")
        self._owned_domain(user, source.rpartition("@")[2])
        target = params.get("forwarder", "").lower()
        if not target:
            raise UapiError("You must specify the “forwarder” parameter.")
        self.state.remove(self.state.forwarders, f"{source}=>{target}", kind="forwarder", function="delete_forwarder")
        return None


class CpanelSandbox:
    """A cPanel server's ``/execute`` API; each account logs in with its own token."""

    def __init__(self, *, name: str = "cpanel", state: PanelState | None = None) -> None:
        self.name = name
        self.state = state or PanelState(name)
        self.ledger = self.state.ledger
        self.uapi = Uapi(self.state)
        #: cPanel user -> API token.
        self.tokens: dict[str, str] = {}
        #: HTTP status for a wrong token (401 vs 403 is unconfirmed; 403 observed on WHM).
        self.auth_failure_status = 403

    @property
    def token(self) -> str:
        """The token of the first account (what a one-account test backend uses)."""
        return next(iter(self.tokens.values()), "")

    def add_account(self, user: str, domain: str | None = None, *, token: str | None = None) -> None:
        self.state.add_account(user, domain)
        self.tokens[user] = token or f"sandbox-cpanel-token-{user}"

    def handle(self, request: Request) -> Reply:
        user = self._authorized(request.headers.get("authorization", ""))
        if user is None:
            return Reply.json(ACCESS_DENIED, self.auth_failure_status)
        if not request.path.startswith("/execute/"):
            return Reply(403, TOKEN_ONLY_UAPI, "text/plain")
        module, _, function = request.path.removeprefix("/execute/").partition("/")
        return Reply.json(self.uapi.run(user, module, function, dict(request.params)))

    def function_of(self, request: Request) -> str:
        return "::".join(request.path.removeprefix("/execute/").split("/", 1))

    def _authorized(self, header: str) -> str | None:
        scheme, _, credentials = header.partition(" ")
        user, _, secret = credentials.partition(":")
        if scheme.lower() == "cpanel" and secret and self.tokens.get(user) == secret:
            return user
        return None
