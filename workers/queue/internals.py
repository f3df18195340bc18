"""The private parts of Dramatiq and redis-py that mailops builds on, pinned by fingerprint.

``workers/queue/broker.py`` subclasses Dramatiq's private ``_RedisConsumer``, calls ``dispatch.lua``
with its own argument layout, and ``fetch.lua``/``reap.lua`` read and write Dramatiq's Redis
storage layout; ``workers/store/redis_client.py`` overrides a redis-py connection method. None of that
is public API, so a release may change it without notice. :func:`drift` compares each piece with
what the code was written against and names what to re-check; ``tests/queue/test_internals.py`` runs it
against the installed packages (and fails when one moved) and against doctored copies.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Internal:
    """One private piece: ``where`` is ``module:attribute.path`` (or ``module/file`` for a data file)."""

    where: str
    #: The signature text of a callable, the names it must set, or the SHA-256 of a file.
    expected: str
    #: What to re-read in mailops when it moved.
    recheck: str


#: Every private piece the code relies on, with its fingerprint as of the versions in requirements.lock.
INTERNALS: tuple[Internal, ...] = (
    Internal("dramatiq.brokers.redis/redis/dispatch.lua",
             "ba4d872e4fb204ebc3f73ca4719265a9946d70e847856c125314f01a8c90540c",
             "queue/broker.MailopsBroker._dispatch (argument layout), store/scripts/fetch.lua, store/scripts/reap.lua, "
             "store/scripts/finish.lua and store/scripts/admit.lua (Dramatiq's key layout and message storage)"),
    Internal("dramatiq.brokers.redis:_RedisConsumer.__init__", "(self, broker, queue_name, prefetch, timeout)",
             "broker.WakingConsumer (constructed by Dramatiq's worker)"),
    Internal("dramatiq.brokers.redis:_RedisConsumer.__init__#sets",
             "message_cache queued_message_ids misses prefetch timeout queue_name broker",
             "broker.WakingConsumer.__next__ (reads and writes these attributes)"),
    Internal("dramatiq.brokers.redis:_RedisConsumer.ack", "(self, message)", "broker.WakingConsumer.ack"),
    Internal("dramatiq.brokers.redis:_RedisConsumer.nack", "(self, message)", "broker.WakingConsumer.nack"),
    Internal("dramatiq.brokers.redis:_RedisConsumer.__next__", "(self)", "broker.WakingConsumer.__next__"),
    Internal("dramatiq.brokers.redis:_RedisConsumer.requeue", "(self, messages)", "broker.WakingConsumer.requeue"),
    Internal("dramatiq.brokers.redis:_RedisConsumer.close", "(self) -> 'None'", "broker.WakingConsumer.close"),
    Internal("dramatiq.brokers.redis:RedisBroker._dispatch", "(self, command)", "broker.MailopsBroker._dispatch"),
    Internal("dramatiq.brokers.redis:RedisBroker._should_do_maintenance", "(self, command: 'str') -> 'int'",
             "broker.MailopsBroker._should_do_maintenance"),
    Internal("dramatiq.brokers.redis:RedisBroker._max_unpack_size", "(self)",
             "broker.MailopsBroker._dispatch and WakingConsumer._fetch_call"),
    Internal("dramatiq.brokers.redis:RedisBroker.__getattr__#sets", "_dispatch do_",
             "broker.MailopsBroker (do_enqueue, do_requeue resolve through _dispatch)"),
    Internal("redis.sentinel:SentinelManagedConnection.connect_check_health",
             "(self, check_health: bool = True, retry_socket_connect: bool = True)",
             "redis_client._MasterFollowingConnection (the Sentinel reconnect fix)"),
)

#: Gives a piece's fingerprint as installed (:func:`current`; tests pass doctored readers).
Reader = Callable[[Internal], str]


def current(piece: Internal) -> str:
    """The installed packages' fingerprint of ``piece``, in the form of :attr:`Internal.expected`."""
    if ":" not in piece.where:
        module_name, _, relative = piece.where.partition("/")
        path = Path(str(importlib.import_module(module_name).__file__)).parent / relative
        return file_fingerprint(path.read_bytes()) if path.exists() else "missing"
    module_name, _, path_text = piece.where.partition(":")
    target: object = importlib.import_module(module_name)
    for part in path_text.split("#")[0].split("."):
        target = getattr(target, part, None)
        if target is None:
            return "missing"
    return callable_fingerprint(piece, target)


def file_fingerprint(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def callable_fingerprint(piece: Internal, target: object) -> str:
    """A callable's signature, or for a ``#sets`` piece which of the expected names its source uses."""
    if not callable(target):
        return "missing"
    if piece.where.endswith("#sets"):
        try:
            source = inspect.getsource(target)
        except (TypeError, OSError):
            return "missing"
        return " ".join(name for name in piece.expected.split() if re.search(rf"\b{re.escape(name)}", source))
    return str(inspect.signature(target))


def drift(read: Reader = current) -> list[str]:
    """One line per piece whose fingerprint moved, saying what changed and what to re-check."""
    lines = []
    for piece in INTERNALS:
        found = read(piece)
        if found != piece.expected:
            lines.append(f"{piece.where} changed (expected {piece.expected!r}, found {found!r}): "
                         f"re-check {piece.recheck}, then update workers/queue/internals.py")
    return lines
