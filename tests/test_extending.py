"""docs/extending.md, followed step by step: a toy command and a toy panel kind, made in the test only."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from schemas.commands import COMMANDS, AccountArgs, Command, CommandSpec, Scope, validate_command
from schemas.generate import README, command_schema, readme_with_table
from tests.clock import ISSUED
from tests.conftest import add_command, wait_for_terminal
from workers.backends import registry
from workers.backends import whm as whm_panel
from workers.backends.base import PanelResult
from workers.backends.registry import build_backend, render_table, tables
from workers.backends.vocabulary import Call, resolve_call
from workers.errors import ConfigError, UnsupportedCommand
from workers.sandbox import SandboxServer
from workers.settings import BackendConfig, Settings

TOY_COMMAND = "toy_end_sessions"


@pytest.fixture
def toy_command(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # Step 1: the declaration: arguments (an existing model, so its scope) and a spec in COMMANDS
    monkeypatch.setitem(COMMANDS, TOY_COMMAND, CommandSpec(TOY_COMMAND, AccountArgs, "sessions", "default",
                                                           "End the account's sessions (toy)."))
    # Step 2: one call on WHM only, in whm.CALLS (the panel function the sandbox already serves: step 3)
    monkeypatch.setitem(whm_panel.CALLS, TOY_COMMAND, {
        "account": Call("", "terminate_cpuser_mailbox_sessions", lambda a: {"username": a.user})})
    yield TOY_COMMAND


def test_a_command_added_as_documented_runs_end_to_end_and_is_unsupported_where_no_call_names_it(
        redis_client: redis.Redis, whm: SandboxServer, settings_for: Callable[..., Settings], runtime_for: Any,
        toy_command: str) -> None:
    # Given the toy command, added as docs/extending.md says, and a worker for a WHM sandbox
    runtime_for(settings_for({"whm1": ("whm", whm)}))
    # When a producer sends it
    add_command(redis_client, {"id": "toy-1", "command": toy_command, "backend": "whm1", "args": {"user": "example"},
                               "producer": "billing", "issued_at": ISSUED})
    # Then it succeeds and the panel changed once
    events = wait_for_terminal(redis_client, {"toy-1"})
    assert [e.status for e in events if e.id == "toy-1"] == ["accepted", "succeeded"]
    assert [(c.target, c.field) for c in whm.app.ledger.changes()] == [("example", "sessions_terminated")]
    # And the generated artefacts have it when regenerated (step 4): its README row, with no call on
    # the kinds that have none, and its branch of the command JSON Schema
    assert f"| `{toy_command}` | `terminate_cpuser_mailbox_sessions` | — | — |" in readme_with_table(README.read_text())
    assert toy_command in command_schema()["properties"]["command"]["enum"]
    # And on a kind without a call it is unsupported before any panel call
    command = validate_command({"command": toy_command, "args": {"user": "shop"}, "producer": "billing"})
    with pytest.raises(UnsupportedCommand):
        resolve_call(tables()["cpanel"], command, "cpanel")


class ToyPanel:
    """A toy panel kind (step 1 of a kind): its calls land in a list instead of a panel."""

    kind = "toy"
    username_means: str | None = None
    calls: dict[str, dict[Scope, Call]] = {
        "terminate_sessions": {"account": Call("", "kick", lambda a: {"login": a.user})}}
    reads: dict[str, dict[Scope, object]] = {}
    not_readable = "a toy panel publishes no read"
    sent: list[tuple[str, dict[str, str]]] = []

    def __init__(self, config: BackendConfig) -> None:
        self.name = config.name

    def supports(self, command: str) -> bool:
        return command in self.calls

    def execute(self, command: Command) -> PanelResult:
        call, args = resolve_call(self.calls, command, self.kind)
        self.sent.append((call.function, call.params(args)))
        return PanelResult(message=f"{call.function} done")

    def check(self) -> PanelResult:
        return PanelResult()

    def close(self) -> None:
        pass


def _config_naming_toy(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "mailops.toml"
    path.write_text('[backends.toy1]\nkind = "toy"\nurl = "https://toy.example"\ntoken_env = "TOY_TOKEN"\n')
    return {"MAILOPS_CONFIG": str(path), "TOY_TOKEN": "toy-token"}


@pytest.mark.unit
def test_a_panel_kind_added_as_documented_is_accepted_built_runs_its_calls_and_gets_a_readme_column(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Given a backends file naming the toy kind: refused before start while no class registers it
    with pytest.raises(ConfigError, match="key 'kind': unknown panel kind 'toy'"):
        Settings.from_env(_config_naming_toy(tmp_path))
    # When its class is in registry.PANELS (step 2), and KINDS derives from them as at import
    monkeypatch.setattr(ToyPanel, "sent", [])
    panels = (*registry.PANELS, ToyPanel)
    monkeypatch.setattr(registry, "PANELS", panels)
    monkeypatch.setattr(registry, "KINDS", {panel.kind: panel for panel in panels})
    # Then the same file is accepted and the registry builds the toy backend from it
    settings = Settings.from_env(_config_naming_toy(tmp_path))
    backend = build_backend(settings.backends["toy1"])
    assert isinstance(backend, ToyPanel)
    # And it runs the commands its CALLS name and no other
    backend.execute(validate_command({"command": "terminate_sessions", "args": {"user": "shop"}, "producer": "billing"}))
    assert ToyPanel.sent == [("kick", {"login": "shop"})]
    with pytest.raises(UnsupportedCommand):
        backend.execute(validate_command({"command": "onspf", "args": {"domain": "shop.example"}, "producer": "billing"}))
    # And the call tables and the README table have its column
    assert "toy" in tables() and "| `toy` |" in render_table().splitlines()[0]
