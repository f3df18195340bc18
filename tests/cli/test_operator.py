"""Operators under default security: each CLI action that issues commands, run as its ``--help``
example shows, signs as the configured operator (or producer), waits, and exits by the outcome."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import redis
from click.testing import CliRunner, Result

from tests.conftest import WHM_TOKEN
from workers.attempt.holds import holds_of
from workers.cli.exit_codes import RET_CONFIG, RET_FAILED, RET_OK
from workers.cli.main import cli
from workers.runtime import Runtime
from workers.sandbox import SandboxServer
from workers.sandbox.whm import WhmSandbox
from workers.settings import Settings
from workers.tools.producer import Producer

KEYS = {"ABUSE": "abuse-key-0123456789abcdef", "BILLING": "billing-key-0123456789abcdef",
        "MIGRATION": "migration-key-0123456789abcd", "ALICE": "alice-key-0123456789abcdef",
        "BOB": "bob-key-0123456789abcdef0123"}

CONFIG = """
[backends.whm1]
kind = "whm"
url = "{url}"
allow_insecure_http = true  # the sandbox on loopback
token_env = "TOKEN_WHM1"
read_timeout = 5.0

[producers.abuse-detector]
key_env = "KEY_ABUSE"
commands = ["suspend_outgoing", "unsuspend_outgoing"]
backends = ["*"]
reasons = ["abuse"]

[producers.billing]
key_env = "KEY_BILLING"
commands = ["*"]
backends = ["whm1"]

[producers.migration]
key_env = "KEY_MIGRATION"
commands = ["suspend_outgoing", "unsuspend_outgoing"]
backends = ["whm1"]

[operators.alice]
key_env = "KEY_ALICE"
actions = ["publish", "holds.release", "reconcile.apply", "dlq.replay", "bulk"]
reasons = ["*"]

[operators.bob]
key_env = "KEY_BOB"
actions = ["publish"]
"""


@dataclass
class Deployment:
    """A worker and the ``mailops`` CLI sharing one backends file, signatures on (the default)."""

    env: dict[str, str]
    settings: Settings
    client: redis.Redis
    panel: WhmSandbox

    def run(self, command_line: str, **env: str) -> Result:
        args = shlex.split(command_line)
        assert args[0] == "mailops"
        return CliRunner().invoke(cli, args[1:], env=self.env | env, catch_exceptions=False)

    def producer(self, name: str, env_key: str) -> Producer:
        return Producer(self.client, producer=name, key=KEYS[env_key].encode())


@pytest.fixture
def deployment(tmp_path: Path, redis_server, redis_client: redis.Redis, whm: SandboxServer,
               runtime_for: Callable[..., Runtime]) -> Iterator[Deployment]:
    panel = whm.app
    assert isinstance(panel, WhmSandbox)
    panel.add_account("shop")
    config = tmp_path / "mailops.toml"
    config.write_text(CONFIG.format(url=whm.url))
    env = {"MAILOPS_REDIS_URL": redis_server.url, "MAILOPS_CONFIG": str(config), "TOKEN_WHM1": WHM_TOKEN,
           "MAILOPS_OPERATOR": "alice", **{f"KEY_{name}": key for name, key in KEYS.items()}}
    settings = Settings.from_env(env)
    assert settings.require_signatures
    runtime_for(settings)
    yield Deployment(env, settings, redis_client, panel)


def help_example(deployment: Deployment, path: str, index: int = 0) -> str:
    """The ``index``-th example line of ``mailops PATH --help`` (every such help ends with examples)."""
    shown = deployment.run(f"mailops {path} --help")
    examples = [line.strip() for line in shown.output.splitlines() if line.strip().startswith("mailops ")]
    assert examples, shown.output
    return examples[index]


def suspend_as_abuse(deployment: Deployment, user: str = "shop") -> None:
    with deployment.producer("abuse-detector", "ABUSE") as abuse:
        command_id = abuse.publish("suspend_outgoing", {"user": user}, backend="whm1", reason="abuse")
        assert abuse.wait(command_id).status == "succeeded"


def test_holds_release_as_its_help_shows_lifts_the_abuse_hold_on_the_panel_and_exits_zero(deployment: Deployment) -> None:
    # Given abuse detection suspended outgoing mail of ``shop``
    suspend_as_abuse(deployment)
    assert deployment.panel.state.accounts["shop"].outgoing == "suspended"
    # When the operator runs the example of `holds release --help`
    example = help_example(deployment, "holds release")
    assert example == "mailops holds release shop --aspect outgoing --reason abuse --force"
    result = deployment.run(example)
    # Then it exits 0 printing the succeeded event, signed as operator.alice
    assert result.exit_code == RET_OK, result.output
    event = orjson.loads(result.stdout.splitlines()[-1])
    assert (event["status"], event["producer"]) == ("succeeded", "operator.alice")
    # And the hold is gone, and the panel's ledger shows the unsuspend
    assert holds_of(deployment.client, deployment.settings.keys, "whm1", "shop", "outgoing") == {}
    assert deployment.panel.state.accounts["shop"].outgoing == "active"
    assert [(c.target, c.new) for c in deployment.panel.ledger.changes() if c.target == "shop"][-1] == ("shop", "active")
    # And the audit stream names the operator and the command
    audit = [orjson.loads(fields[b"body"]) for _id, fields in deployment.client.xrange(deployment.settings.keys.audit)]
    assert any(a.get("event") == "forced_release" and a["by"] == "operator.alice" and a["command"] == event["id"]
               for a in audit)
    assert [(a["operator"], a["action"], a["command"]) for a in audit if a.get("event") == "operator_action"] == [
        ("alice", "holds.release", event["id"])]


def test_an_operator_without_the_action_is_refused_with_the_reason_and_nothing_is_issued(deployment: Deployment) -> None:
    suspend_as_abuse(deployment)
    result = deployment.run("mailops holds release shop --aspect outgoing --reason abuse --force --operator bob")
    assert result.exit_code == RET_FAILED
    assert "operator bob may not holds.release" in result.output
    assert set(holds_of(deployment.client, deployment.settings.keys, "whm1", "shop", "outgoing")) == {"abuse"}


def test_several_operators_and_none_chosen_is_a_config_error_naming_the_way_out(deployment: Deployment) -> None:
    env = {k: v for k, v in deployment.env.items() if k != "MAILOPS_OPERATOR"}
    result = CliRunner().invoke(cli, ["publish", "suspend_outgoing", "--arg", "user=example", "--backend", "whm1"],
                                env=env | {"MAILOPS_OPERATOR": ""}, catch_exceptions=False)
    assert result.exit_code == RET_CONFIG
    assert "--operator NAME" in result.output


def test_publish_as_its_help_shows_signs_as_the_operator_and_exits_zero(deployment: Deployment) -> None:
    result = deployment.run(help_example(deployment, "publish"))
    assert result.exit_code == RET_OK, result.output
    event = orjson.loads(result.stdout.splitlines()[-1])
    assert (event["status"], event["producer"]) == ("succeeded", "operator.alice")
    assert deployment.panel.state.accounts["example"].outgoing == "suspended"


def test_publish_as_a_producer_takes_its_key_from_the_config(deployment: Deployment) -> None:
    # The second example: billing's unsuspend, signed with billing's configured key (no --key-file)
    result = deployment.run(help_example(deployment, "publish", 1))
    assert result.exit_code == RET_OK, result.output
    event = orjson.loads(result.stdout.splitlines()[-1])
    assert (event["status"], event["producer"]) == ("succeeded", "billing")


def test_a_refused_publish_exits_one_and_prints_the_field_and_rule(deployment: Deployment) -> None:
    # Given abuse's hold; When billing tries to lift it by naming abuse's reason
    suspend_as_abuse(deployment)
    result = deployment.run("mailops publish unsuspend_outgoing --arg user=shop --backend whm1 --producer billing "
                            "--reason abuse")
    # Then it is rejected, exits 1, and says why; the hold stays
    assert result.exit_code == RET_FAILED
    assert "rejected [reason: not_allowed]" in result.output
    assert set(holds_of(deployment.client, deployment.settings.keys, "whm1", "shop", "outgoing")) == {"abuse"}


def test_publish_of_an_unsuspend_kept_by_another_hold_exits_one_saying_who_holds_it(deployment: Deployment) -> None:
    suspend_as_abuse(deployment)
    result = deployment.run("mailops publish unsuspend_outgoing --arg user=shop --backend whm1 --producer billing")
    assert result.exit_code == RET_FAILED
    assert orjson.loads(result.stdout.splitlines()[-1])["status"] == "held"
    assert "held: still suspended: held by abuse" in result.output


def test_reconcile_apply_as_its_help_shows_repairs_the_drift_and_exits_zero(deployment: Deployment) -> None:
    # Given a panel that answers accountsummary, abuse's hold, and the panel unsuspended by hand
    suspend_as_abuse(deployment)
    deployment.panel.state.accounts["shop"].outgoing = "active"
    # When the operator runs `reconcile --apply` as its help shows
    example = help_example(deployment, "reconcile", 1)
    assert example == "mailops reconcile --apply"
    result = deployment.run(example)
    # Then the converging suspend was signed, fresh, run and succeeded; the panel is suspended again
    assert result.exit_code == RET_OK, result.output
    event = orjson.loads(result.stdout.splitlines()[-1])
    assert (event["command"], event["status"], event["producer"]) == ("suspend_outgoing", "succeeded", "operator.alice")
    assert deployment.panel.state.accounts["shop"].outgoing == "suspended"
    assert deployment.run("mailops reconcile").exit_code == RET_OK


def test_bulk_as_its_help_shows_signs_each_line_with_its_producers_key_and_the_batch_ends(
        deployment: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the file the example names, with one line of a command migration may not send
    monkeypatch.chdir(tmp_path)
    Path("accounts.csv").write_text("user,command\nexample,\nother,suspend_login\n")
    # When the example runs, Then it waits until both lines ended and exits 1 for the refused one
    sent = deployment.run(help_example(deployment, "bulk"))
    assert sent.exit_code == RET_FAILED, sent.output
    batch_id = sent.stdout.strip().splitlines()[0]
    assert orjson.loads(sent.stdout.splitlines()[-1])["counts"] == {"succeeded": 1, "rejected": 1}
    # And `batch status --follow` ends too, counting the refused line as rejected
    status = deployment.run(f"mailops batch status {batch_id} --follow --json --timeout 60")
    assert status.exit_code == RET_FAILED, status.output
    summary = orjson.loads(status.stdout.splitlines()[-1])
    assert summary["complete"] and summary["counts"] == {"succeeded": 1, "rejected": 1}
    (failure,) = summary["failures"]
    assert (failure["status"], failure["batch"], failure["target"]) == ("rejected", batch_id, "other")
    assert (failure["error"]["field"], failure["error"]["rule"]) == ("command", "not_allowed")


def test_bulk_sent_by_an_operator_is_signed_with_its_key_and_needs_the_bulk_action(
        deployment: Deployment, tmp_path: Path) -> None:
    # Given a file of a command migration may not send
    file = tmp_path / "logins.csv"
    file.write_text("user\nexample\n")
    # When operator alice sends it, Then it runs (her actions include bulk, so any command)
    sent = deployment.run(f"mailops bulk {file} --command terminate_sessions --backend whm1 --producer operator.alice")
    assert sent.exit_code == RET_OK, sent.output
    assert orjson.loads(sent.stdout.splitlines()[-1])["counts"] == {"succeeded": 1}
    # And bob, who may only publish, is refused before anything is sent
    refused = deployment.run(f"mailops bulk {file} --command terminate_sessions --producer operator.bob")
    assert refused.exit_code == RET_FAILED and "operator bob may not bulk" in refused.output
