"""The PHP, Go and shell signing examples in docs/signing/ produce signatures the worker accepts.

Each example reads a command on stdin and prints it signed; the signature is checked with
:func:`workers.ingest.signing.verify`. An example is skipped only when its interpreter is missing here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from schemas.commands import validate_command
from tests.clock import ISSUED
from tests.conftest import wait_for_terminal
from tests.security.conftest import KEYS
from workers.ingest.signing import canonical_form, verify
from workers.sandbox import SandboxServer
from workers.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "signing"
#: (name, command line, extra environment, programs it needs)
Runner = tuple[str, list[str], dict[str, str], tuple[str, ...]]
RUNNERS: list[Runner] = [
    ("shell+python3", ["sh", str(EXAMPLES / "sign.sh")], {"CANONICALISER": "python3"}, ("sh", "openssl", "python3")),
    ("shell+jq", ["sh", str(EXAMPLES / "sign.sh")], {"CANONICALISER": "jq"}, ("sh", "openssl", "jq")),
    ("php", ["php", str(EXAMPLES / "sign.php")], {}, ("php",)),
    ("go", ["go", "run", str(EXAMPLES / "sign.go")], {}, ("go",)),
]
#: A key with non-ASCII, a space and a quote: the examples must use the key's UTF-8 bytes as given.
KEY = 'billing-kéy "2026"'
#: A command ingest accepts, with non-ASCII text and a slash (the password; the id).
PASSWD: dict[str, Any] = {
    "id": "billing/invoice-7", "command": "passwd", "backend": "whm1", "producer": "billing",
    "args": {"email": "info@xn--bcher-kva.example", "password": "Grüße/ß€-Passwort-1"},
    "issued_at": ISSUED,
}
#: What JSON encoders disagree on: quotes, backslash, <>&, U+2028, emoji, nested and empty values, key order.
AWKWARD: dict[str, Any] = {
    "z": 1, "a": {"é": "/", "b": [1, {}, [], None, True]}, "s": 'q"u\\o<t>e&s\u2028 😀 ü/ö', "ä": "", "A": {},
}


def run_example(runner: Runner, command: dict[str, Any], key: str) -> dict[str, Any]:
    name, argv, extra, needs = runner
    missing = [program for program in needs if shutil.which(program) is None]
    if missing:
        pytest.skip(f"the {name} example needs {', '.join(missing)}, which is not installed on this machine")
    env = {**os.environ, **extra, "MAILOPS_KEY": key}
    done = subprocess.run(argv, input=orjson.dumps(command), capture_output=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    signed: dict[str, Any] = orjson.loads(done.stdout)
    return signed


@pytest.mark.parametrize("runner", RUNNERS, ids=[r[0] for r in RUNNERS])
@pytest.mark.parametrize("command", [PASSWD, AWKWARD], ids=["passwd", "awkward"])
def test_each_example_signs_a_command_so_that_verify_accepts_it(runner: Runner, command: dict[str, Any]) -> None:
    # Given a command with non-ASCII text and slashes, and a producer key
    # When the example signs it
    signed = run_example(runner, command, KEY)
    # Then the printed command is the same command, and its signature verifies under that key only
    assert {k: v for k, v in signed.items() if k != "signature"} == command
    assert verify(signed, KEY.encode(), signed["signature"])
    assert not verify(signed, b"another key", signed["signature"])


def test_the_test_command_has_what_the_examples_must_get_right() -> None:
    # The canonical form keeps non-ASCII and "/" as they are, so an example that escapes them fails above.
    form = canonical_form(PASSWD)
    assert "Grüße/ß€".encode() in form and b"billing/invoice-7" in form
    assert validate_command(PASSWD).args["password"] == PASSWD["args"]["password"]


def test_a_command_signed_by_the_shell_example_is_run_by_a_worker_that_requires_signatures(
    redis_client: redis.Redis, whm: SandboxServer, secure_settings: Callable[..., Settings],
    runtime_for: Callable[..., Any],
) -> None:
    # Given a worker that requires signatures, and billing's key
    runtime_for(secure_settings({"whm1": ("whm", whm)}))
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    command = {"id": "billing/add-1", "command": "addmail", "backend": "whm1", "producer": "billing", "issued_at": now,
               "args": {"email": "gruesse@example.example",
                        "password": "Grüße/ß€-Passwort-1", "quota": 100}}
    # When the shell example signs it and its output is added to the stream as it is
    signed = run_example(RUNNERS[0], command, KEYS["billing"].decode())
    redis_client.xadd("mailops:commands", {"body": orjson.dumps(signed)})
    # Then it succeeds
    events = wait_for_terminal(redis_client, {"billing/add-1"}, timeout=20)
    final = [e for e in events if e.terminal]
    assert [(e.status, e.error) for e in final] == [("succeeded", None)]
