"""The hostile corpus through the real stream: each bad entry gets exactly one clear rejection."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import redis

from tests.conftest import wait_for_terminal
from tests.security.conftest import corpus_payload, load_corpus, signed
from workers.sandbox import SandboxServer


def valid_command(i: int) -> dict[str, Any]:
    if i % 4 == 3:
        body = {"id": f"valid-{i}", "command": "addmail", "backend": "whm1", "producer": "migration",
                "args": {"email": f"valid{i}@example.example", "password": f"Valid-pass-{i}", "quota": 50}}
    else:
        body = {"id": f"valid-{i}", "command": "suspend_outgoing", "backend": "whm1", "producer": "abuse-detector",
                "args": {"user": f"valid{i}"}}
    return signed(body)


def test_every_hostile_entry_gets_one_field_level_rejection_and_every_valid_command_succeeds(
    redis_client: redis.Redis, whm: SandboxServer, secure_settings, runtime_for
) -> None:
    # Given a worker that requires signatures, with two backends on one sandbox
    corpus = load_corpus()
    assert len(corpus) >= 300
    valid_ids = set()
    for i in range(40):
        whm.app.add_account(f"valid{i}")
    runtime_for(secure_settings({"whm1": ("whm", whm), "whm2": ("whm", whm)}))
    # When the corpus is added with a valid command after every eighth entry
    expected: dict[str, dict[str, Any]] = {}
    for number, item in enumerate(corpus):
        fields, body = corpus_payload(item, number)
        entry = redis_client.xadd("mailops:commands", fields or {"body": body}).decode()  # type: ignore[union-attr]
        expected[entry] = item
        if number % 8 == 7:
            command = valid_command(number // 8)
            valid_ids.add(command["id"])
            redis_client.xadd("mailops:commands", {"body": orjson.dumps(command)})
    events = wait_for_terminal(redis_client, valid_ids, timeout=60)
    events = wait_for_terminal(redis_client, count=len(corpus) + len(valid_ids), timeout=30)
    # Then every bad entry has exactly one terminal event: rejected, naming the field and the rule
    per_entry = Counter(e.entry for e in events if e.terminal and e.status == "rejected")
    problems = []
    for entry, item in expected.items():
        got = [e for e in events if e.entry == entry and e.terminal]
        want = item["expect"]
        if len(got) != 1 or got[0].status != "rejected" or got[0].error is None:
            problems.append((item["name"], [e.status for e in got]))
            continue
        error = got[0].error
        field_ok = error.field == want["field"] or (error.field or "").startswith(want["field"] + ".")
        rule_ok = bool(error.rule) and (want["rule"] is None or error.rule == want["rule"])
        if not (field_ok and rule_ok and error.message):
            problems.append((item["name"], error.field, error.rule, want))
    assert problems == []
    assert all(count == 1 for count in per_entry.values())
    # And every valid command succeeded, once
    finals = [e for e in events if e.id in valid_ids and e.terminal]
    assert sorted(e.id for e in finals) == sorted(valid_ids)
    assert {e.status for e in finals} == {"succeeded"}
    # And the sandbox saw only the valid commands' changes
    targets = {c.target for c in whm.app.ledger.changes()}
    assert targets <= {f"valid{i}" for i in range(40)} | {f"valid{i}@example.example" for i in range(40)}
    # And the signature and scope refusals are on the audit stream
    audit = [fields for _id, fields in redis_client.xrange("mailops:audit")]
    rules = Counter(f[b"rule"].decode() for f in audit)
    assert rules["mismatch"] >= 20 and rules["not_allowed"] >= 10 and rules["system_account"] >= 6
