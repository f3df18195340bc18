"""BrainyCP backend (``POST http://HOST:8002/api/api.php``, module ``mailclient``).

Every request is a form with the panel login (``username``/``password``), the module and the
operation as field *names* (``mailclient=1&addmail=1``), ``language=en`` (the default answers are
Russian) and the operation's own fields. ``addmail`` also has a mailbox field named ``password``
(a conflict in BrainyCP's docs); for it the login goes in the older ``Login``/``pass`` fields the
connection page names, so the two passwords never share one field.
"""

from __future__ import annotations

from typing import Any

from schemas.commands import Command, Scope
from workers.backends.base import PanelResult
from workers.backends.envelopes import brainycp
from workers.backends.readback import Read, ReadTable
from workers.backends.transport import PanelHttp, json_body
from workers.backends.vocabulary import Call, resolve_call
from workers.settings_models import BackendConfig

MODULE = "mailclient"


def _domain(operation: str) -> dict[Scope, Call]:
    return {"domain": Call("", operation, lambda a: {"domain": a.domain})}


#: command -> target scope -> BrainyCP ``mailclient`` operation (see :mod:`workers.backends.vocabulary`).
CALLS: dict[str, dict[Scope, Call]] = {
    "addmail": {"mailbox": Call("", "addmail", lambda a: {"email": a.email, "password": a.password, "quota": str(a.quota)})},
    "delmail": {"mailbox": Call("", "delmail", lambda a: {"email": a.email})},
    "addforward": {"mailbox": Call("", "addforward", lambda a: {"source": a.email, "target": a.destination, "save_local": "1"})},
    "delforward": {"mailbox": Call("", "delforward", lambda a: {"source": a.email, "target": a.destination})},
    "onspf": _domain("onspf"),
    "offspf": _domain("offspf"),
    "ondkim": _domain("ondkim"),
    "offdkim": _domain("offdkim"),
}


#: Why no BrainyCP cell can be read back: its documented lists (``getlistmail``,
#: ``getforwardmail``) answer only a message, and no call shows SPF or DKIM.
NOT_READABLE = "BrainyCP documents no read of this state"
READS: ReadTable = {}


class BrainycpBackend:
    """A BrainyCP server reached with a panel login."""

    kind = "brainycp"
    #: What ``username`` is; a backends file must give it.
    username_means: str | None = "the panel login"
    #: What each command calls on this kind (see :mod:`workers.backends.vocabulary`).
    calls = CALLS
    reads = READS
    not_readable = NOT_READABLE

    def __init__(self, config: BackendConfig, http: PanelHttp | None = None) -> None:
        self.name = config.name
        self.config = config
        self._http = http or PanelHttp(config)

    def __repr__(self) -> str:
        return f"BrainycpBackend(name={self.name!r}, url={self.config.url!r})"

    def supports(self, command: str) -> bool:
        return command in CALLS

    def execute(self, command: Command) -> PanelResult:
        call, args = resolve_call(CALLS, command, self.kind)
        return self.call(call.function, call.params(args))

    def call(self, operation: str, params: dict[str, str]) -> PanelResult:
        """POST one ``mailclient`` operation and classify its ``{error, mess}`` answer."""
        secret = self.config.token.get_secret_value()
        login = {"Login": self.config.username, "pass": secret} if "password" in params else {
            "username": self.config.username, "password": secret}
        form = {**login, MODULE: "1", operation: "1", "language": "en", **params}
        response = self._http.request("POST", "/api/api.php", headers={"Accept": "application/json"}, data=form)
        body: Any = json_body(self.name, response)
        return brainycp(self.name, operation, body)

    def read(self, read: Read, args: Any) -> dict[str, Any]:
        raise AssertionError(f"{self.name}: BrainyCP has no read calls ({read.function})")

    def check(self) -> PanelResult:
        return self.call("getlistmail", {})

    def close(self) -> None:
        self._http.close()
