"""A sandbox panel behind the transport seam: a backend's requests answered in memory, no socket.

:func:`exchange_with` turns a :class:`~workers.sandbox.server.SandboxServer` that was never started
into an :data:`~workers.backends.transport.Exchange`: each request is parsed as the HTTP server would
(query and form parameters together, header names in lower case) and answered by the same
``serve`` (faults, ledger and all). Unit tests run every backend's real request building and
answer classification against it without Redis or HTTP (the tests marked ``unit``).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from workers.backends.connections import Answer
from workers.backends.transport import Exchange
from workers.sandbox.server import Request, SandboxServer


def exchange_with(server: SandboxServer, seen: list[Request] | None = None) -> Exchange:
    """An exchange answered by ``server`` in memory; each request is appended to ``seen`` if given."""

    def exchange(method: str, target: str, headers: dict[str, str], body: bytes | None) -> Answer:
        parts = urlsplit(target)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        if body and "x-www-form-urlencoded" in headers.get("Content-Type", ""):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        request = Request(method, parts.path, params, {k.lower(): v for k, v in headers.items()})
        if seen is not None:
            seen.append(request)
        reply = server.serve(request)
        if reply is None:
            raise ConnectionResetError("the sandbox dropped the connection")
        return Answer(reply.status, {"content-type": reply.content_type, **{k.lower(): v for k, v in reply.headers}},
                      reply.body)

    return exchange
