"""Fuzzing the ingest path: any entry gets exactly one answer and the consumer never stops."""

from __future__ import annotations

from typing import Any

import orjson
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import read_events
from tests.security.conftest import signed
from workers.ingest.auth import security_gates
from workers.ingest.reader import Ingestor
from workers.sandbox import SandboxServer
from workers.store.command_store import CommandStore

texts = st.text(max_size=40) | st.sampled_from(["example", "root", "a&user=root", "x@example.example", "\r\n", "xn--pple-43d"])
values = st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | texts, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(texts, inner, max_size=3), max_leaves=8)
commands = st.fixed_dictionaries(
    {"command": st.sampled_from(["suspend_outgoing", "addmail", "passwd", "modifyacct", "onspf"]) | texts,
     "args": st.dictionaries(st.sampled_from(["user", "email", "password", "domain", "quota", "owner"]) | texts, values,
                             max_size=4),
     "producer": st.sampled_from(["abuse-detector", "billing", "migration"]) | texts,
     "backend": st.sampled_from(["whm1", "whm2"])},
    optional={"priority": values, "reply_to": values, "seq": values},
)
entries = st.tuples(commands, st.sampled_from(["own", "none", "other_key", "tamper"])) | st.binary(max_size=60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(entries, min_size=1, max_size=8))
def test_any_batch_of_entries_gets_exactly_one_answer_each_and_never_raises(
    batch: list[Any], redis_client: redis.Redis, whm: SandboxServer, secure_settings
) -> None:
    # Given the real ingest consumer with the security gates
    settings_ = secure_settings({"whm1": ("whm", whm), "whm2": ("whm", whm)})
    redis_client.flushall()
    ingestor = Ingestor(redis_client, settings_, CommandStore(redis_client, settings_),
                        gates=security_gates(settings_, redis_client))
    ingestor.ensure_group()
    # When a batch of arbitrary entries is read and processed
    for n, item in enumerate(batch):
        if isinstance(item, bytes):
            body = item
        else:
            command, mode = item
            body = orjson.dumps(signed(dict(command, id=f"fuzz-{n}"), mode=mode))
        redis_client.xadd("mailops:commands", {"body": body})
    ingestor.process(ingestor.read_batch(block_ms=100))
    # Then each entry has exactly one answer: rejected with a field and rule, or accepted
    events = read_events(redis_client)
    answered = [e.entry for e in events if e.status in ("rejected", "accepted")]
    assert len(answered) == len(batch) == len(set(answered))
    for event in events:
        if event.status == "rejected":
            assert event.error is not None and event.error.field and event.error.rule
    assert redis_client.xpending("mailops:commands", "mailops-ingest")["pending"] == 0
