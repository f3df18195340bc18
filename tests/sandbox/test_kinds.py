"""The sandbox kinds list matches the worker's panel kinds, and ``mailops sandbox`` offers each one."""

from __future__ import annotations

from collections import Counter

import pytest
from click.testing import CliRunner

from workers.backends.registry import KINDS
from workers.cli.exit_codes import RET_OK
from workers.cli.main import cli
from workers.sandbox.kinds import SANDBOXES

pytestmark = pytest.mark.unit


def test_every_panel_kind_the_worker_knows_has_exactly_one_sandbox_and_no_sandbox_lacks_a_kind() -> None:
    # Given the panel kinds the worker registers and the sandbox kinds
    # When they are counted by kind name
    sandboxes = Counter(box.kind for box in SANDBOXES)
    # Then each worker kind has one sandbox, and there is no sandbox for a kind the worker lacks
    assert sandboxes == Counter(set(KINDS))


def test_mailops_sandbox_help_offers_a_port_and_a_credential_option_for_every_sandbox_kind() -> None:
    # Given the real command tree
    # When an operator asks for the sandbox command's help
    result = CliRunner().invoke(cli, ["sandbox", "--help"], prog_name="mailops", catch_exceptions=False)
    # Then it exits 0 and lists each kind's port option and credential option
    assert result.exit_code == RET_OK, result.output
    options = {word for word in result.output.split() if word.startswith("--")}
    for box in SANDBOXES:
        assert {f"--{box.kind}-port", f"--{box.credential}"} <= options, box.kind
