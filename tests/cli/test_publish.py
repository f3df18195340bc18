"""``mailops publish``: one command from flags or JSON; --wait exits by outcome."""

from __future__ import annotations

from pathlib import Path

import orjson
import redis

from tests.cli.conftest import Invoke
from workers.cli.exit_codes import RET_FAILED, RET_OK, RET_TIMEOUT, RET_USAGE
from workers.ingest.signing import verify


def test_publish_with_wait_prints_the_success_and_exits_zero(redis_client: redis.Redis, whm, settings_for, runtime_for,
                                                              mailops: Invoke) -> None:
    # Given a worker
    runtime_for(settings_for({"whm1": ("whm", whm)}, require_signatures=False))
    # When an operator publishes from flags and waits
    result = mailops("publish", "suspend_outgoing", "--arg", "user=example", "--backend", "whm1", "--id", "op-1", "--wait")
    # Then it prints the id and the terminal event, exits 0, and the panel changed
    assert result.exit_code == RET_OK, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "op-1"
    event = orjson.loads(lines[-1])
    assert (event["id"], event["status"], event["producer"]) == ("op-1", "succeeded", "operator")
    assert [c.target for c in whm.app.ledger.changes()] == ["example"]


def test_publish_with_wait_exits_one_when_the_panel_refuses(redis_client: redis.Redis, whm, settings_for, runtime_for,
                                                            mailops: Invoke) -> None:
    runtime_for(settings_for({"whm1": ("whm", whm)}, require_signatures=False))
    result = mailops("publish", "--json", '{"command": "suspend_outgoing", "args": {"user": "ghost"}, "backend": "whm1"}',
                     "--wait")
    assert result.exit_code == RET_FAILED
    assert orjson.loads(result.stdout.splitlines()[-1])["status"] == "failed"


def test_publish_with_wait_exits_one_on_a_rejection_and_names_the_field(redis_client: redis.Redis, whm, settings_for,
                                                                         runtime_for, mailops: Invoke) -> None:
    runtime_for(settings_for({"whm1": ("whm", whm)}, require_signatures=False))
    result = mailops("publish", "suspend_outgoing", "--arg", "user=Not Valid", "--backend", "whm1", "--wait")
    assert result.exit_code == RET_FAILED
    event = orjson.loads(result.stdout.splitlines()[-1])
    assert (event["status"], event["error"]["field"]) == ("rejected", "args.user")


def test_publish_signs_the_command_with_the_key_file(redis_client: redis.Redis, tmp_path: Path, mailops: Invoke) -> None:
    # Given a producer key
    key_file = tmp_path / "key"
    key_file.write_bytes(b"s3cret-key\n")
    # When a command is published from JSON on stdin with that key (no worker running)
    result = mailops("publish", "--json", "-", "--key-file", str(key_file), "--producer", "billing", "--no-wait",
                     input='{"command": "unsuspend_outgoing", "args": {"user": "example"}, "id": "bill-9"}')
    assert result.exit_code == RET_OK, result.output
    # Then the stream entry carries a signature that verifies over the command without it
    ((_entry, fields),) = redis_client.xrange("mailops:commands")
    body = orjson.loads(fields[b"body"])
    assert body["id"] == "bill-9" and body["producer"] == "billing"
    assert verify(body, b"s3cret-key", body["signature"])
    assert not verify(body, b"other-key", body["signature"])


def test_publish_with_wait_times_out_with_exit_five_when_no_worker_runs(redis_client: redis.Redis, mailops: Invoke) -> None:
    result = mailops("publish", "suspend_outgoing", "--arg", "user=example", "--wait", "--timeout", "0.5")
    assert result.exit_code == RET_TIMEOUT


def test_publish_without_a_command_is_a_usage_error(redis_client: redis.Redis, mailops: Invoke) -> None:
    result = mailops("publish", "--arg", "user=example")
    assert result.exit_code == RET_USAGE
