"""BrainyCP simulator: ``/api/api.php`` on port 8002, module ``mailclient``.

Credentials are the form fields ``username``/``password`` (or the older ``Login``/``pass``); a bad
login answers ``{"code": 1, "message": "Not perm2"}``. The module and the operation are sent as
field *names* (``mailclient=1&addmail=1``). Answers are ``{"error": N, "mess": ...}`` with the codes
of BrainyCP's "API: Managing mailboxes" page, in Russian unless ``language=en``.
A blank ``GET /api/api.php?Login=...&pass=...`` is the documented connection check.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workers.sandbox.server import Reply, Request
from workers.sandbox.state import Mailbox, PanelState, fingerprint

NOT_PERM = {"code": 1, "message": "Not perm2"}
EMAIL = re.compile(r"^[A-Za-z0-9!#$%*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$")

#: (English, Russian) texts of the common codes.
COMMON = {
    2: ("Error in the parameter array", "Ошибка в массиве параметров"),
    1000: ("You do not have permission to administer this user", "У вас нет прав на администрирование этого пользователя"),
    1001: ("There is no such user in the ISP-panel", "Такого пользователя нет в ISP-панели"),
}


class Answer(Exception):
    """An ``{"error": code, "mess": text}`` answer other than success."""

    def __init__(self, code: int, mess: str) -> None:
        super().__init__(mess)
        self.code = code
        self.mess = mess


@dataclass(frozen=True)
class Login:
    password: str
    #: "Full API access (administrator)": may act on any host user via ``panel_user``.
    root: bool = False


Operation = Callable[[str, dict[str, str]], str]


class BrainycpSandbox:
    """A BrainyCP server's host users, mailboxes, forwards and SPF/DKIM flags."""

    def __init__(self, *, name: str = "brainycp", username: str = "admin", password: str = "sandbox-brainy-pass") -> None:
        self.name = name
        self.state = PanelState(name)
        self.ledger = self.state.ledger
        self.logins: dict[str, Login] = {username: Login(password, root=True)}
        self.username = username
        self.token = password
        self.operations: dict[str, Operation] = {
            "addmail": self._addmail,
            "delmail": self._delmail,
            "addforward": self._addforward,
            "delforward": self._delforward,
            "onspf": self._flag("spf", True, "SPF", "enabled"),
            "offspf": self._flag("spf", False, "SPF", "disabled"),
            "ondkim": self._flag("dkim", True, "dkim", "enabled"),
            "offdkim": self._flag("dkim", False, "dkim", "disabled"),
            "getlistmail": lambda user, p: f"The mailbox list was successfully retrieved for: {user}",
        }

    def add_account(self, user: str, domain: str | None = None, *, password: str | None = None) -> None:
        """A host user; with a password it can also log in to the API for itself."""
        self.state.add_account(user, domain)
        if password:
            self.logins[user] = Login(password)

    def handle(self, request: Request) -> Reply:
        if request.path != "/api/api.php":
            return Reply(404, b"<html><body><h1>404 Not Found</h1></body></html>", "text/html")
        params = dict(request.params)
        login = self._login(params)
        if login is None:
            return Reply.json(NOT_PERM)
        if request.method == "GET" and "mailclient" not in params:
            return Reply(200, b"", "text/html")  # the documented connection check: a blank page
        english = params.get("language", "ru") == "en"
        operation = next((op for op in self.operations if op in params), None)
        if "mailclient" not in params or operation is None or request.method != "POST":
            return Reply.json({"error": 400, "mess": "Unfortunately, the module is not available to you."})
        try:
            with self.state.lock:
                user = self._acting_user(login, params)
                mess = self.operations[operation](user, params)
            return Reply.json({"error": 0, "mess": mess})
        except Answer as exc:
            text = exc.mess
            if exc.code in COMMON:
                text = COMMON[exc.code][0 if english else 1]
            return Reply.json({"error": exc.code, "mess": text})

    def function_of(self, request: Request) -> str:
        return next((op for op in self.operations if op in request.params), "")

    def _login(self, params: dict[str, str]) -> str | None:
        name = params.get("Login") or params.get("username") or ""
        secret = params.get("pass") if "pass" in params else params.get("password", "")
        found = self.logins.get(name)
        return name if found is not None and secret and found.password == secret else None

    def _acting_user(self, login: str, params: dict[str, str]) -> str:
        wanted = params.get("panel_user") or ""
        if wanted and wanted != login and not self.logins[login].root:
            raise Answer(1000, "")
        if wanted:
            if wanted not in self.state.accounts:
                raise Answer(1001, "")
            return wanted
        return login  # a root login without panel_user acts on every host user

    def _may(self, user: str, domain: str) -> bool:
        owner = self.state.owner_of(domain)
        return owner is not None and (owner == user or self.logins.get(user, Login("")).root)

    def _mailbox_password(self, params: dict[str, str]) -> str:
        # With Login/pass credentials, ``password`` is the mailbox's; otherwise the two share the field.
        return params.get("password", "")

    def _addmail(self, user: str, params: dict[str, str]) -> str:
        email, password, quota = params.get("email", "").lower(), self._mailbox_password(params), params.get("quota", "")
        if not EMAIL.match(email) or not password or quota == "":
            raise Answer(2, "")
        if not self._may(user, email.rpartition("@")[2]):
            raise Answer(4, f"The specified domain in the mailbox was not found in the system: {email}")
        if email in self.state.mailboxes:
            raise Answer(1, f"This mailbox already exists: {email}")
        self.state.put(self.state.mailboxes, email, Mailbox(email, fingerprint(password), quota), kind="mailbox",
                       function="addmail")
        return f"Mailbox added successfully: {email}"

    def _delmail(self, user: str, params: dict[str, str]) -> str:
        email = params.get("email", "").lower()
        if not EMAIL.match(email):
            raise Answer(2, "")
        if email not in self.state.mailboxes or not self._may(user, email.rpartition("@")[2]):
            raise Answer(1, f"Error deleting mailbox: mailbox {email} not found")
        self.state.remove(self.state.mailboxes, email, kind="mailbox", function="delmail")
        return "Mailbox successfully deleted"

    def _forward_args(self, params: dict[str, str]) -> tuple[str, list[str]]:
        source = params.get("source", "").lower()
        targets = [t.strip().lower() for t in params.get("target", "").split(",") if t.strip()]
        if not EMAIL.match(source) or not targets or not all(EMAIL.match(t) for t in targets):
            raise Answer(2, "")
        return source, targets

    def _addforward(self, user: str, params: dict[str, str]) -> str:
        source, targets = self._forward_args(params)
        if not self._may(user, source.rpartition("@")[2]):
            raise Answer(1, f"Mailbox forwarding error: domain of {source} not found")
        for target in targets:
            self.state.put(self.state.forwarders, self.state.forwarder_key(source, target), "fwd", kind="forwarder",
                           function="addforward")
        return f"Mailbox forwarding was successfully defined: {source} => {','.join(targets)}"

    def _delforward(self, user: str, params: dict[str, str]) -> str:
        source, targets = self._forward_args(params)
        keys = [f"{source}=>{t}" for t in targets]
        if not self._may(user, source.rpartition("@")[2]) or not all(k in self.state.forwarders for k in keys):
            raise Answer(1, f"Error deleting mailbox forwarding: no forwarding {source} => {','.join(targets)}")
        for key in keys:
            self.state.remove(self.state.forwarders, key, kind="forwarder", function="delforward")
        return "Mailbox forwarding was deleted"

    def _flag(self, attr: str, value: bool, label: str, done: str) -> Operation:
        def run(user: str, params: dict[str, str]) -> str:
            domain = params.get("domain", "").lower()
            if not domain:
                raise Answer(1, "Error in the parameter array")  # 1 here, not 2 (BrainyCP's docs)
            if not self._may(user, domain):
                verb = "enabling" if value else "disabling"
                raise Answer(2, f"Error {verb} {label} record for domain {domain}")
            record: Any = self.state.domains[domain]
            if not self.state.set(record, attr, value, target=domain, function=f"{'on' if value else 'off'}{attr}"):
                raise Answer(3, f"{label} is already {done} for domain: {domain}")
            return "Entry for domain is enabled" if value else "The record is disabled for the domain"

        return run
