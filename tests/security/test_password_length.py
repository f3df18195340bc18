"""The 1,024-character password rule is the plaintext's: a password at the limit is sealed,
queued, read back and run; one character more is rejected at the door."""

from __future__ import annotations

import orjson
import redis

from tests.conftest import read_events, wait_for_terminal
from tests.security.conftest import signed
from workers.sandbox import SandboxServer
from workers.sandbox.state import fingerprint


def addmail(id: str, password: str) -> dict[str, object]:
    return signed({"id": id, "command": "addmail", "backend": "whm1", "producer": "migration",
                   "args": {"email": f"{id}@example.example", "password": password}})


def test_a_password_of_exactly_1024_characters_is_sealed_run_and_succeeds_and_1025_is_rejected(
    redis_client: redis.Redis, whm: SandboxServer, secure_settings, runtime_for,
) -> None:
    # Given a worker with a sealing key
    runtime_for(secure_settings({"whm1": ("whm", whm)}))
    at_limit, over = "p" * 1023 + "\u00e9", "q" * 1025
    # When a mailbox is added with a password at the limit (its sealed form is longer), and one over it
    redis_client.xadd("mailops:commands", {"body": orjson.dumps(addmail("long-ok", at_limit))})
    redis_client.xadd("mailops:commands", {"body": orjson.dumps(addmail("long-no", over))})
    events = wait_for_terminal(redis_client, {"long-ok", "long-no"})
    # Then the first ran once with the whole password, and the second never got past the door
    ended = {e.id: e for e in events if e.terminal}
    assert ended["long-ok"].status == "succeeded"
    assert whm.app.state.mailboxes["long-ok@example.example"].password == fingerprint(at_limit)
    rejected = ended["long-no"]
    assert rejected.status == "rejected" and rejected.error is not None
    assert (rejected.error.field, rejected.error.rule) == ("args.password", "string_too_long")
    assert len([e for e in read_events(redis_client) if e.id == "long-ok" and e.terminal]) == 1
