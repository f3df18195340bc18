"""Dead letters: full history, browse, show, replay through idempotency, purge (and the CLI)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import redis
from click.testing import CliRunner

from schemas.fields import SECRET_FIELDS
from tests.conftest import WHM_TOKEN, add_command, read_events, retry_for, wait_for_terminal
from tests.guarantees.processes import suspend
from workers.attempt.retry_policy import RetryPolicy
from workers.cli.main import cli
from workers.sandbox import Faults, SandboxServer
from workers.scrubbing import SECRET_KEY_PARTS, is_secret_key
from workers.settings import Settings
from workers.store.dead_letters import redact


@pytest.fixture
def dead_lettered(redis_client: redis.Redis, whm: SandboxServer, settings_for, runtime_for, monkeypatch: pytest.MonkeyPatch,
                  tmp_path: Path):
    """A worker, and command `dl-1` dead-lettered after 2 attempts against a panel answering HTTP 500;
    the CLI's environment names operator ``ops``, who may replay dead letters."""
    retry_for(monkeypatch, "unsuspend_outgoing",
                        RetryPolicy(max_attempts=2, min_backoff_ms=50, max_backoff_ms=100))
    settings = settings_for({"whm1": ("whm", whm)}, require_signatures=False)
    runtime = runtime_for(settings)
    whm.set_faults(Faults(error_rate=1.0))
    add_command(redis_client, suspend("dl-1", "example", command="unsuspend_outgoing"))
    events = wait_for_terminal(redis_client, {"dl-1"}, timeout=30)
    assert [e.status for e in events if e.id == "dl-1" and e.terminal] == ["dead_lettered"]
    whm.set_faults(Faults())
    act_as_replaying_operator(monkeypatch, tmp_path, settings)
    return runtime


def act_as_replaying_operator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings: Settings) -> None:
    """The CLI's environment: the worker's Redis and config, plus operator ``ops``, who may replay dead letters."""
    monkeypatch.setenv("MAILOPS_REDIS_URL", settings.redis_url or "")
    config = tmp_path / "mailops.toml"
    config.write_text(config.read_text() + '[operators.ops]\nkey_env = "KEY_OPS"\nactions = ["dlq.replay"]\n')
    monkeypatch.setenv("MAILOPS_CONFIG", str(config))
    monkeypatch.setenv("TOKEN_WHM1", WHM_TOKEN)
    monkeypatch.setenv("KEY_OPS", "ops-key-0123456789abcdef")


def test_a_dead_letter_is_listed_and_shown_with_every_attempt_and_its_error(dead_lettered) -> None:
    # Given a dead-lettered command; When an operator lists and shows it
    runner = CliRunner()
    listed = runner.invoke(cli, ["dlq", "list", "--json"])
    shown = runner.invoke(cli, ["dlq", "show", "dl-1"])
    # Then it is listed with its attempts and last error
    assert listed.exit_code == 0, listed.output
    rows = [orjson.loads(line) for line in listed.output.splitlines() if line.startswith("{")]
    assert [(r["id"], r["command"], r["backend"], r["attempts"]) for r in rows] == [("dl-1", "unsuspend_outgoing", "whm1", 2)]
    assert rows[0]["error_kind"] == "panel_unavailable"
    # And show gives every attempt with its timing, worker and error
    assert shown.exit_code == 0, shown.output
    data = orjson.loads(shown.output)
    attempts = data["attempts"]
    assert [(a["attempt"], a["result"]) for a in attempts] == [(1, "retrying"), (2, "dead_lettered")]
    assert all(a["end"] >= a["start"] > 0 and a["worker"] and a["error"]["kind"] == "panel_unavailable" for a in attempts)
    assert data["outcome"]["status"] == "dead_lettered"
    # And filters by backend or command leave it out when they do not match
    assert "dl-1" not in runner.invoke(cli, ["dlq", "list", "--backend", "nope"]).output


def test_replay_runs_a_dead_letter_again_once_and_a_second_replay_does_nothing(redis_client: redis.Redis, whm: SandboxServer, dead_lettered) -> None:
    # Given a dead-lettered command and a panel that works again
    runner = CliRunner()
    # When it is replayed (with --all and a matching filter)
    first = runner.invoke(cli, ["dlq", "replay", "--all", "--command", "unsuspend_outgoing"])
    assert first.exit_code == 0 and "dl-1\treplayed" in first.output
    events = wait_for_terminal(redis_client, count=2, timeout=30)
    # Then it ran again and succeeded, once, and left the dead-letter index
    assert [e.status for e in events if e.id == "dl-1" and e.terminal] == ["dead_lettered", "succeeded"]
    assert redis_client.zcard("mailops:dlq") == 0
    # And replaying it again by id does nothing (it is no longer dead-lettered)
    second = runner.invoke(cli, ["dlq", "replay", "dl-1"])
    assert second.exit_code == 1 and "dl-1\tsucceeded" in second.output
    assert [e.status for e in read_events(redis_client) if e.id == "dl-1" and e.terminal] == ["dead_lettered", "succeeded"]
    # And the history keeps the dead-lettered attempts, the replay and the new attempt
    history = dead_lettered.store.history("dl-1")
    assert [h["result"] for h in history] == ["retrying", "dead_lettered", "replayed", "succeeded"]


def test_purge_empties_the_index_but_the_id_is_still_remembered(redis_client: redis.Redis, dead_lettered) -> None:
    # Given a dead letter; When it is purged
    result = CliRunner().invoke(cli, ["dlq", "purge", "--yes"])
    # Then the index is empty, and the same id sent again is a duplicate, not a new run
    assert result.exit_code == 0 and "purged 1" in result.output
    assert redis_client.zcard("mailops:dlq") == 0
    add_command(redis_client, suspend("dl-1", "example", command="unsuspend_outgoing"))
    events = wait_for_terminal(redis_client, count=2, timeout=30)
    assert [e.status for e in events if e.id == "dl-1" and e.terminal] == ["dead_lettered", "duplicate"]


def test_a_replayed_command_tells_its_reply_to_stream_as_well_as_the_events_stream(
        redis_client: redis.Redis, whm: SandboxServer, settings_for, runtime_for, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    # Given a command with a reply_to stream, dead-lettered against a failing panel
    retry_for(monkeypatch, "unsuspend_outgoing",
                        RetryPolicy(max_attempts=1, min_backoff_ms=50, max_backoff_ms=100))
    settings = settings_for({"whm1": ("whm", whm)}, require_signatures=False)
    runtime_for(settings)
    whm.set_faults(Faults(error_rate=1.0))
    add_command(redis_client, suspend("rt-1", "example", command="unsuspend_outgoing") | {"reply_to": "billing:replies"})
    wait_for_terminal(redis_client, {"rt-1"}, timeout=30)
    whm.set_faults(Faults())
    act_as_replaying_operator(monkeypatch, tmp_path, settings)
    # When an operator replays it
    replayed = CliRunner().invoke(cli, ["dlq", "replay", "rt-1"])
    assert replayed.exit_code == 0, replayed.output
    events = wait_for_terminal(redis_client, count=2, timeout=30)
    # Then its reply_to stream got every event the events stream got for it, the replay's included
    ours = [e.status for e in events if e.id == "rt-1"]
    theirs = [e.status for e in read_events(redis_client, "billing:replies")]
    assert ours == theirs and "succeeded" in theirs and theirs.count("accepted") == 2


def test_a_dead_letter_without_a_valid_stored_command_is_answered_unreplayable(
    redis_client: redis.Redis, whm: SandboxServer, settings_for
) -> None:
    # Given dead letters whose record keeps no command, or one that no longer validates
    from workers.store.command_store import CommandStore
    from workers.store.dead_letters import DeadLetters

    settings = settings_for({"whm1": ("whm", whm)})
    redis_client.hset(settings.keys.command("dl-none"), mapping={"status": "dead_lettered", "gen": 1})
    redis_client.hset(settings.keys.command("dl-bad"), mapping={"status": "dead_lettered", "gen": 1,
                                                                 "command": orjson.dumps({"command": "nope"})})
    letters = DeadLetters(redis_client, CommandStore(redis_client, settings))
    # When they are replayed, then each is answered `unreplayable` and nothing is queued
    assert [letters.replay(i) for i in ("dl-none", "dl-bad")] == ["unreplayable", "unreplayable"]
    assert not [k for k in redis_client.scan_iter("mailops:dq:*") if b".msgs" in k]


def test_replay_as_its_help_shows_waits_for_the_outcome_and_is_audited_with_the_operator(
        redis_client: redis.Redis, dead_lettered) -> None:
    # Given a dead letter; When the operator runs the example of `dlq replay --help`
    shown = CliRunner().invoke(cli, ["dlq", "replay", "--help"])
    example = next(line.strip() for line in shown.output.splitlines() if line.strip().startswith("mailops "))
    assert example == "mailops dlq replay dl-1"
    result = CliRunner().invoke(cli, example.split()[1:])
    # Then it waited, printed the succeeded event, and exits 0
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout.splitlines()[-1])["status"] == "succeeded"
    # And the audit stream says who replayed which command
    audit = [orjson.loads(fields[b"body"]) for _id, fields in redis_client.xrange("mailops:audit")]
    assert [(a["operator"], a["action"], a["command"]) for a in audit] == [("ops", "dlq.replay", "dl-1")]


def test_a_dead_letter_hides_every_argument_that_logs_hide_and_every_secret_argument() -> None:
    # Given arguments named as each secret the scrubber knows (command arguments first), and a plain one
    args = {name: "value" for name in (*SECRET_FIELDS, *SECRET_KEY_PARTS)} | {"user": "example"}
    # When a dead letter is shown
    shown = redact(args)
    # Then every secret is hidden by the one list, and the rest is shown
    assert {k for k, v in shown.items() if v == "***"} == {k for k in args if is_secret_key(k)} == set(args) - {"user"}
    assert shown["user"] == "example"
