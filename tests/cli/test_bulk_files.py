"""``mailops bulk`` with real files: typed CSV cells, both JSONL forms, grouped errors, and Ctrl-C that says how to resume."""

from __future__ import annotations

import base64
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import redis
from pydantic import SecretStr

from tests.cli.conftest import Invoke, cli_env
from tests.conftest import wait_for_terminal
from workers.cli.batch_ids import batch_id_for
from workers.cli.bulk import coerce_cells
from workers.cli.exit_codes import RET_FAILED, RET_INTERRUPTED, RET_OK
from workers.sandbox import SandboxServer
from workers.store.embedded_redis import EmbeddedRedis

ROOT = Path(__file__).resolve().parents[2]


def test_a_csv_with_a_quota_column_migrates_mailboxes_with_integer_quotas(
        redis_client: redis.Redis, tmp_path: Path, whm: SandboxServer, settings_for: Any, runtime_for: Any,
        mailops: Invoke) -> None:
    # Given a worker (with a sealing key, as mailbox passwords need) and a CSV exported from a spreadsheet
    sealing = SecretStr(base64.b64encode(os.urandom(64)).decode())
    runtime_for(settings_for({"whm1": ("whm", whm)}, sealing_key=sealing))
    file = tmp_path / "mailboxes.csv"
    file.write_text("email,password,quota\n"
                    "alice@example.example,Alice-pass-12345,500\n"
                    "bob@example.example,Bob-pass-123456,\n"
                    "carol@other.example,Carol-pass-12345,unlimited\n")
    # When it is published as addmail commands
    sent = mailops("bulk", str(file), "--command", "addmail", "--backend", "whm1")
    assert sent.exit_code == RET_OK, sent.output
    events = wait_for_terminal(redis_client, count=3)
    # Then every mailbox exists on the panel, the quota cell arrived as a number, an empty cell as the default
    assert sorted(e.status for e in events if e.terminal) == ["succeeded"] * 3, [e.outcome for e in events]
    boxes = whm.app.state.mailboxes
    assert boxes["alice@example.example"].quota == "500"
    assert boxes["bob@example.example"].quota == "0"
    assert boxes["carol@other.example"].quota == "unlimited"


def test_csv_cells_take_the_type_of_the_argument_they_fill() -> None:
    assert coerce_cells("addmail", {"email": "a@b.example", "quota": "500"})["quota"] == 500
    assert coerce_cells("addmail", {"quota": "unlimited"})["quota"] == "unlimited"
    assert coerce_cells("set_forward_destination", {"forward_to": "a@b.example; c@d.example"})["forward_to"] == [
        "a@b.example", "c@d.example"]
    assert coerce_cells("suspend_outgoing", {"user": "1234"})["user"] == "1234"


def test_flat_json_lines_and_lines_with_args_are_both_accepted(tmp_path: Path, mailops: Invoke) -> None:
    file = tmp_path / "moves.jsonl"
    file.write_text('{"email": "a@example.example", "password": "A-pass-1234567", "quota": 100}\n'
                    '{"command": "addmail", "backend": "whm1", "args": {"email": "b@example.example", '
                    '"password": "B-pass-1234567"}}\n'
                    '{"email": "c@example.example", "password": "C-pass-1234567", "backend": "whm1"}\n')
    result = mailops("bulk", str(file), "--command", "addmail", "--backend", "whm1", "--dry-run")
    assert result.exit_code == RET_OK, result.stderr
    assert "3 line(s) valid" in result.stderr


def test_a_dry_run_groups_bad_lines_by_rule_with_counts_and_the_first_line_numbers(tmp_path: Path,
                                                                                  mailops: Invoke) -> None:
    # Given 8 lines with a quota that is no number and 2 with a broken address
    rows = [f"u{i}@example.example,Pass-word-12345,lots" for i in range(8)] + ["broken,Pass-word-12345,1"] * 2
    file = tmp_path / "bad.csv"
    file.write_text("email,password,quota\n" + "\n".join(rows) + "\n")
    # When it is validated
    result = mailops("bulk", str(file), "--command", "addmail", "--backend", "whm1", "--dry-run")
    # Then each rule is one group: its count, its first five line numbers and one example message
    assert result.exit_code == RET_FAILED
    err = result.stderr
    assert "args.quota" in err and ": 8 line(s): 2, 3, 4, 5, 6 and 3 more" in err
    assert "args.email" in err and ": 2 line(s): 10, 11\n" in err
    assert err.count("e.g. line") == 2
    assert "10 bad line(s)" in err


def test_ctrl_c_while_sending_names_the_batch_and_the_command_that_resumes_it_with_no_line_sent_twice(
        tmp_path: Path, redis_server: EmbeddedRedis, redis_client: redis.Redis, whm: SandboxServer) -> None:
    # Given a big file being published by a real `mailops bulk` process
    total = 30_000
    file = tmp_path / "big.csv"
    file.write_text("user\n" + "".join(f"user{i}\n" for i in range(total)))
    batch = batch_id_for(file.read_bytes())
    env = {**os.environ, **cli_env(tmp_path, redis_server.url, {"whm1": whm}),
           "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "workers", "bulk", str(file), "--command", "suspend_outgoing",
                             "--backend", "whm1", "--no-wait"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # When it has sent its first chunk, Redis holds further writes still and the operator presses Ctrl-C
        while not redis_client.exists("mailops:commands"):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.001)
        redis_client.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
        proc.send_signal(signal.SIGINT)
        time.sleep(0.2)  # let the signal land while the write is held (the outcome does not depend on it)
    finally:
        redis_client.execute_command("CLIENT", "UNPAUSE")
    out, err = proc.communicate(timeout=120)
    # Then it exits 130, naming the batch and the exact command that resumes it
    assert proc.returncode == RET_INTERRUPTED, err
    assert f"interrupted: batch {batch}" in err and "Aborted!" not in err
    resume = err.split("resume with: ", 1)[1].splitlines()[0]
    assert resume == f"mailops bulk {shlex.quote(str(file))} --command suspend_outgoing --backend whm1 " \
                     "--producer migration --priority bulk --no-wait"
    sent_before = redis_client.xlen("mailops:commands")
    assert 0 < sent_before < total
    # And running that command finishes the batch with every line sent exactly once
    done = subprocess.run(shlex.split(resume), cwd=ROOT, env=env, text=True, capture_output=True, timeout=300)
    assert done.returncode == RET_OK, done.stderr
    ids = [orjson.loads(fields[b"body"])["id"] for _id, fields in redis_client.xrange("mailops:commands")]
    assert len(ids) == total and len(set(ids)) == total
    assert int(redis_client.hget(f"mailops:batch:{batch}", "published") or 0) == total
