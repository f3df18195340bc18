"""cPanel WHM API 1 backend (port 2087, ``/json-api/<function>?api.version=1``).

Authentication is ``Authorization: whm USER:TOKEN``. Requests are POSTed as a form body, the way
cPanel's own client does; the sandbox and real servers accept GET query strings too.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from schemas.commands import Command
from workers.backends.base import PanelResult
from workers.backends.envelopes import whm_api1
from workers.backends.transport import PanelHttp, json_body
from workers.errors import UnsupportedCommand
from workers.settings import BackendConfig

#: command -> builder of (WHM function, form parameters) for account-level targets.
Call = tuple[str, dict[str, str]]
ACCOUNT_CALLS: dict[str, Callable[[Command], Call]] = {
    "suspend_outgoing": lambda c: ("suspend_outgoing_email", {"user": c.args["user"]}),
    "unsuspend_outgoing": lambda c: ("unsuspend_outgoing_email", {"user": c.args["user"]}),
}


class WhmBackend:
    """A WHM server reached with a root or reseller API token."""

    kind = "whm"

    def __init__(self, config: BackendConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        self.name = config.name
        self.config = config
        self._http = PanelHttp(config, transport=transport)
        self._headers = {
            "Authorization": f"whm {config.username}:{config.token.get_secret_value()}",
            "Accept": "application/json",
        }

    def __repr__(self) -> str:
        return f"WhmBackend(name={self.name!r}, url={self.config.url!r})"

    def supports(self, command: str) -> bool:
        return command in ACCOUNT_CALLS

    def execute(self, command: Command) -> PanelResult:
        build = ACCOUNT_CALLS.get(command.command)
        if build is None:
            raise UnsupportedCommand(f"{command.command} is not supported by backend kind {self.kind}")
        function, params = build(command)
        return self.call(function, params)

    def call(self, function: str, params: dict[str, str]) -> PanelResult:
        """Call one WHM API 1 function and classify its answer."""
        response = self._http.request(
            "POST", f"/json-api/{function}", headers=self._headers, data={"api.version": "1", **params}
        )
        return whm_api1(self.name, json_body(self.name, response))

    def check(self) -> PanelResult:
        return self.call("version", {})

    def close(self) -> None:
        self._http.close()
