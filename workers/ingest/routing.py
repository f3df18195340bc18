"""Routing: which backend runs a command that names none.

The map lives in Redis (``Keys.routes``: target -> backend name) so bulk migrations can move
accounts between servers with ``mailops routes set``; each backend's configured ``targets`` seed it
(without overwriting what an operator changed). A mailbox routes by its domain (then parent
domains), an account by its name, a domain by itself.
"""

from __future__ import annotations

from typing import Any

import redis

from schemas.commands import Command
from workers.errors import CommandRejected, UnknownBackend
from workers.ingest.reader import Entry
from workers.settings import Settings
from workers.store.wire import as_text


def route_keys(target: str) -> list[str]:
    """Targets to look up, most specific first: ``a@shop.example`` -> ``shop.example``, ``example``."""
    target = target.lower()
    if "@" in target:
        target = target.rpartition("@")[2]
    labels = target.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)] if len(labels) > 1 else [target]


class RouteMap:
    """The target -> backend hash in Redis."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.key = settings.keys.routes

    def seed(self) -> int:
        """Add each configured backend's targets that have no route yet; return how many were added."""
        added = 0
        for name, config in self.settings.backends.items():
            for target in config.targets:
                added += int(bool(self.client.hsetnx(self.key, target.lower(), name)))
        return added

    def resolve(self, target: str) -> str | None:
        keys = route_keys(target)
        values: Any = self.client.hmget(self.key, keys)
        for value in values:
            if value:
                return as_text(value)
        return None

    def all(self) -> dict[str, str]:
        raw: Any = self.client.hgetall(self.key)
        return {k.decode(): v.decode() for k, v in sorted(raw.items())}

    def set(self, target: str, backend: str) -> None:
        self.settings.backend(backend)  # raises UnknownBackend
        self.client.hset(self.key, target.lower(), backend)

    def remove(self, target: str) -> bool:
        return bool(self.client.hdel(self.key, target.lower()))


class RoutingGate:
    """Ingest gate: check a named backend, or resolve the backend from the command's target."""

    def __init__(self, client: redis.Redis, settings: Settings, *, seed: bool = True) -> None:
        self.settings = settings
        self.routes = RouteMap(client, settings)
        if seed:
            self.routes.seed()

    def __call__(self, command: Command, entry: Entry) -> Command:
        if command.backend is not None:
            if command.backend not in self.settings.backends:
                raise UnknownBackend(f"no backend named {command.backend!r} is configured")
            return command
        target = command.target
        backend = self.routes.resolve(target)
        if backend is None:
            raise CommandRejected("backend", "unroutable", f"no backend given and no route for {target!r}")
        if backend not in self.settings.backends:
            raise UnknownBackend(f"{target!r} routes to {backend!r}, which is not configured")
        return command.model_copy(update={"backend": backend})
