"""``mailops backends check``: a table, green for a usable backend, red (and exit 1) otherwise."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from tests.conftest import WHM_TOKEN, write_config
from workers.cli.exit_codes import RET_FAILED, RET_OK
from workers.cli.main import cli
from workers.sandbox import SandboxServer

GREEN_OK = "\x1b[32mok"
RED_FAIL = "\x1b[31mFAIL"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check(tmp_path: Path, backends: dict[str, dict[str, Any]], env: dict[str, str]) -> Result:
    path = write_config(tmp_path / "backends.toml", backends)
    # FORCE_COLOR makes rich keep its colours on the runner's non-terminal output.
    return CliRunner().invoke(cli, ["backends", "check"], env={"MAILOPS_CONFIG": str(path), "FORCE_COLOR": "1", **env},
                              catch_exceptions=False)


def row(output: str, name: str) -> str:
    (line,) = [line for line in output.splitlines() if re.search(rf"│ {name}\b", line)]
    return line


def test_backends_check_with_every_backend_usable_shows_green_rows_and_exits_zero(tmp_path: Path,
                                                                                   whm: SandboxServer) -> None:
    # Given one WHM backend with the right token
    result = check(tmp_path, {"whm1": {"kind": "whm", "url": whm.url, "token_env": "T1"}}, {"T1": WHM_TOKEN})
    # Then its row is green and the exit code is 0
    assert result.exit_code == RET_OK, result.output
    assert GREEN_OK in row(result.output, "whm1")


def test_backends_check_shows_a_wrong_token_and_a_refused_port_red_and_exits_one(tmp_path: Path,
                                                                                 whm: SandboxServer) -> None:
    # Given a good backend, one with a wrong token and one whose port refuses connections
    backends: dict[str, dict[str, Any]] = {
        "good": {"kind": "whm", "url": whm.url, "token_env": "T_GOOD"},
        "badtoken": {"kind": "whm", "url": whm.url, "token_env": "T_BAD"},
        "refused": {"kind": "whm", "url": f"http://127.0.0.1:{closed_port()}", "token_env": "T_GOOD",
                    "connect_timeout": 2.0},
    }
    # When the operator checks them
    result = check(tmp_path, backends, {"T_GOOD": WHM_TOKEN, "T_BAD": "not-the-token"})
    # Then the table has one row each: the good one green, the two others red with a reason, exit 1
    assert result.exit_code == RET_FAILED, result.output
    assert GREEN_OK in row(result.output, "good")
    assert RED_FAIL in row(result.output, "badtoken") and "│ auth: " in row(result.output, "badtoken")
    assert RED_FAIL in row(result.output, "refused") and "panel_unavailable: " in row(result.output, "refused")
    assert WHM_TOKEN not in result.output


def test_backends_check_without_backends_exits_one_and_says_why(tmp_path: Path) -> None:
    result = check(tmp_path, {}, {})
    assert result.exit_code == RET_FAILED
    assert "no backends configured" in result.stderr
