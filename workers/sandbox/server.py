"""A real HTTP server on loopback that serves one sandbox panel, with fault injection.

Control endpoints (no credentials; loopback only) live under ``/__sandbox__/``:
``GET ledger``, ``GET stats``, ``POST faults`` (JSON :class:`Faults` fields), ``POST reset-stats``.

Every request is counted as a *read* (of the state mailops verifies, :data:`STATE_READS`), a
*lookup* (routing and credential checks, :data:`LOOKUPS`) or a *change* call (anything else), so a
test can check "one change call plus one read" in ``stats()``.
"""

from __future__ import annotations

import json
import random
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from workers.sandbox.ledger import Ledger
from workers.sandbox.state import PanelState

#: Calls that read the state mailops verifies changes with.
STATE_READS = frozenset({
    "accountsummary", "get_user_email_forward_destination", "Email::list_pops_with_disk", "Email::list_forwarders",
    "EmailAuth::validate_current_spfs", "EmailAuth::validate_current_dkims",
})
#: Calls that change nothing and read no verified state: routing and credential checks.
LOOKUPS = frozenset({"getdomainowner", "version", "Email::list_pops", "getlistmail", "getforwardmail"})

#: What cpsrvd serves (HTTP 200) to a request whose credentials it does not take: its login form.
LOGIN_PAGE = (b"<!DOCTYPE html><html><head><title>WHM Login</title></head><body>"
              b"<form id='login_form' action='/login/?login_only=1' method='post'>"
              b"<input name='user' id='user' type='text'><input name='pass' id='pass' type='password'>"
              b"<button id='login_submit' type='submit'>Log in</button></form></body></html>")


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, payload: Any, status: int = 200, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
        return cls(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"), "application/json", headers)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]


class PanelApp(Protocol):
    """What a sandbox panel implements; the server does HTTP, faults and the ledger endpoint."""

    name: str
    ledger: Ledger
    state: PanelState

    def handle(self, request: Request) -> Reply: ...

    def function_of(self, request: Request) -> str:
        """The panel function a request calls (``suspend_outgoing_email``, ``Email::add_pop``)."""
        ...


def call_kind(function: str) -> str:
    """``read``, ``lookup`` or ``change`` (see the module's docstring)."""
    return "read" if function in STATE_READS else "lookup" if function in LOOKUPS else "change"


@dataclass
class Faults:
    """Faults to inject, each a share of requests (0..1) unless it says seconds."""

    #: Seconds every answer is delayed by.
    latency_s: float = 0.0
    #: Share answered with HTTP 500 and an HTML body, before anything is applied.
    error_rate: float = 0.0
    #: Share answered with HTTP 429 and ``Retry-After: retry_after_s``.
    rate_limit_rate: float = 0.0
    retry_after_s: float = 1.0
    #: Share answered with an HTML page that is not a login page (HTTP 200, a proxy's or a
    #: maintenance page) instead of JSON: a transient failure.
    html_rate: float = 0.0
    #: Share answered with cpsrvd's HTML login page (HTTP 200), as it answers when it does not take
    #: the credentials: an ``auth`` failure.
    login_page_rate: float = 0.0
    #: Share that is applied, then held for ``hang_s`` seconds before answering (client times out).
    timeout_after_apply_rate: float = 0.0
    hang_s: float = 5.0
    #: Share that is applied, then the connection is closed with no answer.
    drop_after_apply_rate: float = 0.0
    #: Share of successful JSON answers that echo the request's parameters back (secrets too),
    #: in the reason, the data and a top-level ``echo``, as some panels do (reads of the state
    #: are answered plainly: they carry no secret, and the echo would reshape their lists).
    echo_rate: float = 0.0
    #: Share of change calls answered OK without applying anything (a panel that lies).
    lie_rate: float = 0.0
    #: Seconds after its answer that a change call's change is applied (0 = before answering), as
    #: cPanel's queueprocd does for some work.
    apply_late_s: float = 0.0
    #: The shares above apply to change calls only (reads and lookups are answered normally), to
    #: cut a change's answer while the read of it, before a retry, gets through.
    changes_only: bool = False
    #: Seed of the fault dice, for repeatable runs.
    seed: int | None = None


class _QuietServer(ThreadingHTTPServer):
    """A client that went away mid-answer (a killed worker, a call past its deadline) is what the
    sandbox is there to see, not an error: no traceback for it."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class SandboxServer:
    """Serve one :class:`PanelApp` on 127.0.0.1; start, stop and restart on the same port."""

    def __init__(self, app: PanelApp, *, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None) -> None:
        self.app = app
        self.host = host
        self.port = port or _free_port(host)
        self.faults = faults or Faults()
        self._rng = random.Random(self.faults.seed)
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests = 0
        #: Requests served by kind: ``change``, ``read``, ``lookup`` (see :func:`call_kind`).
        self.kinds: Counter[str] = Counter()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)

    def start(self) -> SandboxServer:
        handler = _handler_for(self)
        httpd = _QuietServer((self.host, self.port), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: new connections are refused until :meth:`start` is called again."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset_stats(self) -> None:
        with self._lock:
            self.max_in_flight = self.in_flight
            self.requests = 0
            self.kinds = Counter()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"in_flight": self.in_flight, "max_in_flight": self.max_in_flight, "requests": self.requests,
                    "changes": self.kinds["change"], "reads": self.kinds["read"], "lookups": self.kinds["lookup"]}

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def serve(self, request: Request) -> Reply | None:
        """Answer one request, with faults; ``None`` means drop the connection."""
        function = self.app.function_of(request)
        kind = call_kind(function)
        with self._lock:
            self.in_flight += 1
            self.requests += 1
            self.kinds[kind] += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            f = self.faults if kind == "change" or not self.faults.changes_only else Faults(latency_s=self.faults.latency_s)
            error, limited, html = self._roll(f.error_rate), self._roll(f.rate_limit_rate), self._roll(f.html_rate)
            login = self._roll(f.login_page_rate)
            hang, drop = self._roll(f.timeout_after_apply_rate), self._roll(f.drop_after_apply_rate)
            echo = kind != "read" and self._roll(f.echo_rate)
            lie = kind == "change" and self._roll(f.lie_rate)
        try:
            if f.latency_s:
                time.sleep(f.latency_s)
            if error:
                return Reply(500, b"<html><body><h1>HTTP 500: Internal Server Error</h1></body></html>", "text/html")
            if limited:
                return Reply.json({"error": "Too Many Requests"}, 429, (("Retry-After", f"{f.retry_after_s:g}"),))
            if login:
                return Reply(200, LOGIN_PAGE, "text/html")
            if html:
                return Reply(200, b"<!DOCTYPE html><html><body><h1>Down for maintenance</h1></body></html>", "text/html")
            reply = self._handled(request, lie=lie, late_s=f.apply_late_s if kind == "change" else 0.0)
            if echo:
                reply = _echoing(reply, request)
            if hang:
                time.sleep(f.hang_s)
            if drop:
                return None
            return reply
        finally:
            with self._lock:
                self.in_flight -= 1

    def _handled(self, request: Request, *, lie: bool, late_s: float) -> Reply:
        """The app's answer; a lying call's changes are dropped, a late one's applied ``late_s`` later."""
        if not lie and not late_s:
            return self.app.handle(request)
        with self.app.state.withheld() as changes:
            reply = self.app.handle(request)
        if not lie:
            timer = threading.Timer(late_s, lambda: [change() for change in changes])
            timer.daemon = True
            timer.start()
        return reply

    def control(self, method: str, path: str, body: bytes) -> Reply:
        if path == "/__sandbox__/ledger":
            return Reply.json([c.as_dict() for c in self.app.ledger.changes()])
        if path == "/__sandbox__/stats":
            return Reply.json(self.stats())
        if path == "/__sandbox__/faults" and method == "POST":
            known = {f.name for f in fields(Faults)}
            data = {k: v for k, v in json.loads(body or b"{}").items() if k in known}
            self.set_faults(Faults(**data))
            return Reply.json(asdict(self.faults))
        if path == "/__sandbox__/reset-stats" and method == "POST":
            self.reset_stats()
            return Reply.json(self.stats())
        return Reply.json({"error": "unknown sandbox control path"}, 404)


def _echoing(reply: Reply, request: Request) -> Reply:
    """``reply`` with the request's parameters echoed into it (a successful JSON answer only)."""
    if reply.status != 200 or "json" not in reply.content_type:
        return reply
    body = json.loads(reply.body)
    if not isinstance(body, dict):
        return reply
    params = dict(request.params)
    body["echo"] = params
    if isinstance(body.get("metadata"), dict):
        body["metadata"]["reason"] = f"{body['metadata'].get('reason') or 'OK'} (request: {params})"
    data = body.get("data")
    if isinstance(data, dict):
        data["echo"] = params
        inner = data.get("uapi")
        if isinstance(inner, dict):
            inner["messages"] = [f"done: {params}"]
            inner["data"] = {**inner["data"], "echo": params} if isinstance(inner.get("data"), dict) else {
                "echo": params, "was": inner.get("data")}
    elif data is None:
        body["data"] = {"echo": params}
    return Reply(reply.status, json.dumps(body).encode(), reply.content_type, reply.headers)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _handler_for(server: SandboxServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Real panels (cpsrvd, nginx) set TCP_NODELAY; without it the headers and body written
        # apart meet the client's delayed ACK and every call stalls ~40 ms.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            split = urlsplit(self.path)
            if split.path.startswith("/__sandbox__/"):
                self._send(server.control(self.command, split.path, body))
                return
            params = dict(parse_qsl(split.query, keep_blank_values=True))
            if body and "x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
                params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = server.serve(Request(self.command, split.path, params, headers))
            if reply is None:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self._send(reply)

        def _send(self, reply: Reply) -> None:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = _handle
        do_POST = _handle

    return Handler
