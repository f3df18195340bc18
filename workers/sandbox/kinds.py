"""Every sandbox panel kind, once: ``mailops sandbox`` derives its options, servers and banner from
:data:`SANDBOXES`, so a new panel kind is added here rather than in the command."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from workers.sandbox.brainycp import BrainycpSandbox
from workers.sandbox.cpanel import CpanelSandbox
from workers.sandbox.server import PanelApp
from workers.sandbox.whm import WhmSandbox


@dataclass(frozen=True)
class SandboxKind:
    """One panel kind's simulator and how ``mailops sandbox`` exposes it."""

    #: The panel kind, as ``workers.backends.registry.KINDS`` names it (a test checks they agree).
    kind: str
    #: The panel's name in the ``--<kind>-port`` help text.
    title: str
    port: int
    #: The credential option without its dashes (``whm-token``): every kind logs in differently.
    credential: str
    credential_default: str
    credential_help: str
    #: (credential, account names) -> the simulator with those accounts.
    build: Callable[[str, tuple[str, ...]], PanelApp]
    #: (server URL, credential, first account) -> the line telling a producer how to call it.
    banner: Callable[[str, str, str], str]

    @property
    def port_option(self) -> str:
        return f"{self.kind}-port"

    @property
    def port_help(self) -> str:
        return f"Port of the {self.title} sandbox (0 = any free port)."


def _whm(token: str, accounts: tuple[str, ...]) -> WhmSandbox:
    whm = WhmSandbox(token=token)
    for user in accounts:
        whm.add_account(user)
    return whm


def _cpanel(token: str, accounts: tuple[str, ...]) -> CpanelSandbox:
    cpanel = CpanelSandbox()
    for user in accounts:
        cpanel.add_account(user, token=token)
    return cpanel


def _brainycp(password: str, accounts: tuple[str, ...]) -> BrainycpSandbox:
    brainy = BrainycpSandbox(password=password)
    for user in accounts:
        brainy.add_account(user)
    return brainy


#: In the README table's order.
SANDBOXES: tuple[SandboxKind, ...] = (
    SandboxKind("whm", "WHM", 2087, "whm-token", "sandbox-whm-token", "API token of WHM user root.", _whm,
                lambda url, token, _first: f"WHM       {url}  Authorization: whm root:{token}"),
    SandboxKind("cpanel", "cPanel UAPI", 2083, "cpanel-token", "sandbox-cpanel-token",
                "API token of every cPanel account.", _cpanel,
                lambda url, token, first: f"cPanel    {url}  Authorization: cpanel {first}:{token}"),
    SandboxKind("brainycp", "BrainyCP", 8002, "brainycp-password", "sandbox-brainy-pass",
                "Password of the BrainyCP administrator 'admin'.", _brainycp,
                lambda url, password, _first: (f"BrainyCP  {url}/api/api.php  "
                                               f"form fields Login=admin pass={password}")),
)
