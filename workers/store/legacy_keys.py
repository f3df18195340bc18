"""Upgrade of per-target state written before a target's identity included its backend.

Versions before backend-scoped identity kept holds and order records per (target, aspect)
(:meth:`Keys.legacy_holds`, :meth:`Keys.legacy_order`). :func:`upgrade` moves each into the
(backend, target, aspect) keys, once, when a worker (or ``mailops holds``) starts:

* a hold goes to the backend its own record names (every hold record carries the suspend's
  backend), else the backend of the order record beside it;
* an order record goes to the backend it names (suspensions store theirs), else the routed
  backend of its target, else every configured backend: an old stamp then still makes an older
  command on that target stale, as it did before the upgrade (never less ordering than before);
* what the new keys already hold wins (a hold is never overwritten, a newer stamp is kept);
  leases are not moved (they expire within a minute).

Each legacy key is moved in one WATCHed transaction, so two workers upgrading at once, or an old
worker still writing, never lose a hold; running it again finds nothing to do.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any

import orjson
import redis

from workers.attempt.ordering import OrderStamp
from workers.constants import Keys
from workers.store.wire import as_text

logger = logging.getLogger(__name__)

#: Resolves a target to its routed backend (``None``: no route).
Router = Callable[[str], str | None]


def upgrade(client: redis.Redis, keys: Keys, backends: Iterable[str], route: Router) -> int:
    """Move every legacy hold and order record to its backend-scoped keys; returns how many moved."""
    configured = sorted(backends)
    moved = 0
    for family, kind in ((f"{keys.prefix}:holds", "holds"), (f"{keys.prefix}:order", "order")):
        for raw in client.scan_iter(match=f"{family}:*", count=500):
            key = as_text(raw)
            aspect, _, target = key[len(family) + 1:].partition(":")
            if not target or ":" in target:
                continue
            move = functools.partial(_move, keys=keys, key=key, kind=kind, target=target, aspect=aspect,
                                     configured=configured, route=route)
            try:
                client.transaction(move, key)
            except redis.ResponseError as exc:  # not a hash: not ours to move; never blocks a start
                logger.warning("left %s in place: %s", key, exc)
                continue
            moved += 1
    if moved:
        logger.info("moved %d per-target records to backend-scoped keys", moved)
    return moved


def _move(pipe: Any, *, keys: Keys, key: str, kind: str, target: str, aspect: str, configured: list[str],
          route: Router) -> None:
    record = {as_text(k): as_text(v) for k, v in pipe.hgetall(key).items()}
    order = {as_text(k): as_text(v) for k, v in pipe.hgetall(keys.legacy_order(target, aspect)).items()}
    fallback = [order["backend"]] if order.get("backend") else None
    if kind == "holds":
        writes = _hold_writes(pipe, keys, record, target, aspect, fallback or _routed(target, configured, route))
    else:
        writes = _order_writes(pipe, keys, record, target, aspect, fallback or _routed(target, configured, route))
    pipe.multi()
    for new_key, fields in writes:
        pipe.hset(new_key, mapping=fields)
    pipe.delete(key)


def _hold_writes(pipe: Any, keys: Keys, record: dict[str, str], target: str, aspect: str,
                 fallback: list[str]) -> list[tuple[str, dict[str, str]]]:
    writes: dict[str, dict[str, str]] = {}
    for reason, hold in record.items():
        named = _named_backend(hold)
        for backend in [named] if named else fallback:
            new_key = keys.holds(backend, target, aspect)
            if not pipe.hexists(new_key, reason):
                writes.setdefault(new_key, {})[reason] = hold
    return list(writes.items())


def _order_writes(pipe: Any, keys: Keys, record: dict[str, str], target: str, aspect: str,
                  backends: list[str]) -> list[tuple[str, dict[str, str]]]:
    writes = []
    for backend in backends:
        new_key = keys.order(backend, target, aspect)
        current = {as_text(k): as_text(v) for k, v in pipe.hgetall(new_key).items()}
        fields = {}
        for name, value in record.items():
            if name.startswith("last"):
                kept = current.get(name)
                if kept is None or _newer(value, than=kept):
                    fields[name] = value
            elif name in ("backend", "args") and name not in current:
                fields[name] = value
        if fields:
            writes.append((new_key, fields))
    return writes


def _named_backend(hold: str) -> str | None:
    try:
        record = orjson.loads(hold)
    except orjson.JSONDecodeError:
        return None
    backend = record.get("backend") if isinstance(record, dict) else None
    return backend if isinstance(backend, str) and backend else None


def _newer(stamp: str, *, than: str) -> bool:
    """Whether ``stamp`` orders after ``than`` (an unreadable stamp never replaces a readable one)."""
    try:
        return OrderStamp.decode(than) < OrderStamp.decode(stamp)
    except ValueError:
        return False


def _routed(target: str, configured: list[str], route: Router) -> list[str]:
    backend = route(target)
    return [backend] if backend else configured
