"""``mailops bulk`` and ``mailops batch status``: resumable batches whose counts match the events."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import redis

from tests.cli.conftest import Invoke, cli_env
from tests.conftest import read_events
from workers.cli.exit_codes import RET_FAILED, RET_OK
from workers.sandbox import SandboxServer
from workers.sandbox.whm import WhmSandbox
from workers.settings import Settings
from workers.store.embedded_redis import EmbeddedRedis


def test_a_dry_run_reports_every_bad_line_and_sends_nothing(redis_client: redis.Redis, tmp_path: Path,
                                                            mailops: Invoke) -> None:
    # Given a CSV file with three bad lines among good ones
    file = tmp_path / "moves.csv"
    file.write_text("command,backend,user\n"
                    "suspend_outgoing,whm1,alice\n"
                    "explode_mailbox,whm1,bob\n"
                    "suspend_outgoing,whm1,Not Valid\n"
                    "suspend_outgoing,whm1,carol\n"
                    "suspend_outgoing,whm1,\n")
    # When it is validated
    result = mailops("bulk", str(file), "--dry-run")
    # Then every bad line is reported under its field and rule, and nothing was sent
    assert result.exit_code == RET_FAILED
    assert "command: unknown_command: 1 line(s): 3\n" in result.stderr
    assert "args.user: string_pattern_mismatch: 1 line(s): 4\n" in result.stderr
    assert "args.user: missing: 1 line(s): 6\n" in result.stderr
    assert "3 bad line(s)" in result.stderr
    assert redis_client.xlen("mailops:commands") == 0 if redis_client.exists("mailops:commands") else True


def test_a_dry_run_of_a_good_file_names_the_batch(redis_client: redis.Redis, tmp_path: Path, mailops: Invoke) -> None:
    file = tmp_path / "moves.jsonl"
    file.write_text('{"command": "suspend_outgoing", "backend": "whm1", "args": {"user": "alice"}}\n')
    result = mailops("bulk", str(file), "--dry-run")
    assert result.exit_code == RET_OK
    assert "1 line(s) valid" in result.stderr and not redis_client.exists("mailops:commands")


def test_batch_status_counts_outcomes_and_lists_the_failures(redis_client: redis.Redis, tmp_path: Path, whm,
                                                             settings_for, runtime_for, mailops: Invoke) -> None:
    runtime_for(settings_for({"whm1": ("whm", whm)}, require_signatures=False))
    file = tmp_path / "mixed.csv"
    file.write_text("user\nexample\nghost\nother\n")
    sent = mailops("bulk", str(file), "--command", "suspend_outgoing", "--backend", "whm1", "--no-wait")
    assert sent.exit_code == RET_OK, sent.output
    batch_id = sent.stdout.strip()
    result = mailops("batch", "status", batch_id, "--follow", "--interval", "0.2", "--timeout", "30", "--json")
    assert result.exit_code == RET_FAILED
    status = orjson.loads(result.stdout.splitlines()[-1])
    assert status["counts"] == {"failed": 1, "succeeded": 2}
    assert [(f["id"], f["status"]) for f in status["failures"]] == [(f"{batch_id}-3", "failed")]
    table = mailops("batch", "status", batch_id)
    assert table.exit_code == RET_FAILED and "ghost" in table.stdout and "succeeded" in table.stdout


def test_a_10000_line_bulk_interrupted_half_way_and_run_again_applies_every_line_once(
    redis_client: redis.Redis, redis_server: EmbeddedRedis, tmp_path: Path, runtime_for, mailops: Invoke
) -> None:
    # Given 10,000 accounts on a WHM sandbox, a worker with 16 threads, and a file of 10,000 lines
    app = WhmSandbox(token="bulk-token")
    users = [f"u{i}" for i in range(10_000)]
    for user in users:
        app.add_account(user)
    with SandboxServer(app) as whm:
        # (read-back off: this test is about resuming a bulk run, and reading back doubles its panel calls)
        env = cli_env(tmp_path, redis_server.url, {"whm1": whm}, whm1={"verify": False})
        runtime_for(Settings.from_env(env), threads=16)
        file = tmp_path / "migration.jsonl"
        file.write_bytes(b"".join(orjson.dumps({"command": "suspend_outgoing", "backend": "whm1", "args": {"user": u}})
                                  + b"\n" for u in users))
        # When the run is interrupted after half the lines, then run again
        first = mailops("bulk", str(file), "--limit", "5000", extra_env=env)
        assert first.exit_code == RET_OK and "stopped after 5000 of 10000" in first.stderr
        batch_id = first.stdout.strip()
        second = mailops("bulk", str(file), "--no-wait", extra_env=env)
        assert second.exit_code == RET_OK and "5000 line(s) already sent; resuming" in second.stderr
        assert second.stdout.strip() == batch_id
        # Then every line ran once
        # (a bound on the wait, not a speed target: 10,000 commands through one in-process worker,
        # sharing its interpreter with the sandbox panel, take 1-2 minutes on a busy 2-core machine)
        result = mailops("batch", "status", batch_id, "--follow", "--timeout", "300", "--json", extra_env=env)
        assert result.exit_code == RET_OK, result.output
        changes = app.ledger.changes()
        assert len(changes) == 10_000 and {c.target for c in changes} == set(users)
    # And the status command's counts are the terminal events of the batch
    status = orjson.loads(result.stdout.splitlines()[-1])
    terminal = [e for e in read_events(redis_client) if e.terminal and e.batch == batch_id]
    assert len({e.id for e in terminal}) == len(terminal) == 10_000
    # And nothing was sent twice: each line was admitted once and none came back as a duplicate
    batch_events = [e for e in read_events(redis_client) if e.batch == batch_id]
    assert sum(e.status == "accepted" for e in batch_events) == 10_000
    assert not any(e.status == "duplicate" for e in batch_events)
    assert status["counts"] == dict(Counter(e.status for e in terminal)) == {"succeeded": 10_000}
    assert status["ended"] == status["total"] == status["published"] == 10_000
