"""What the console's routes share: the :class:`Console` state, rendering and form helpers."""

from __future__ import annotations

import ipaddress
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import orjson
import redis
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from workers.cli.backends import CheckResult
from workers.console.auth import COOKIE, Session, Sessions
from workers.scrubbing import REDACTED, scrub_value
from workers.settings import Settings
from workers.store.command_store import CommandStore
from workers.store.dead_letters import DeadLetters

HERE = Path(__file__).parent
#: Headers on every response: no caching of pages that show live state, no framing, no inline script.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def known_secrets(settings: Settings) -> list[str]:
    """Every secret the settings hold: never to appear in a response, whatever a record carries."""
    found = [b.token.get_secret_value() for b in settings.backends.values()]
    found += [p.key.get_secret_value() for p in settings.producers.values()]
    found += [o.key.get_secret_value() for o in settings.operators.values()]
    found += [u.password_hash.get_secret_value() for u in settings.console.users.values()]
    if settings.sealing_key is not None:
        found.append(settings.sealing_key.get_secret_value())
    return sorted({s for s in found if s}, key=len, reverse=True)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def when(ms: int | None) -> str:
    if not ms:
        return "—"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def age(ms: int | None) -> str:
    if not ms:
        return "—"
    seconds = max(0, int(time.time() - ms / 1000))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


class Console:
    """The state the routes share: settings, Redis, sessions, templates, the secrets to mask."""

    def __init__(self, settings: Settings, client: redis.Redis, *, secure_cookies: bool | None) -> None:
        self.settings = settings
        self.client = client
        self.sessions = Sessions(client, settings)
        self.dead = DeadLetters(client, CommandStore(client, settings))
        self.secure_cookies = secure_cookies
        self.secrets = known_secrets(settings)
        self.checks: dict[str, CheckResult] = {}
        self.checked_ms: int | None = None
        #: The last reconcile check (``running``, ``counts`` by state, drifted ``findings``).
        self.drift: dict[str, Any] = {}
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
        self.env.filters.update(when=when, age=age, pretty=self.pretty)
        self.env.globals.update(urlencode=urlencode)

    def clean(self, value: Any) -> Any:
        return scrub_value(value, self.secrets)

    def pretty(self, value: Any) -> str:
        return orjson.dumps(self.clean(value), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()

    def mask(self, text: str) -> str:
        """``text`` with every configured secret replaced: the last guard before a byte leaves."""
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def render(self, template: str, session: Session | None, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.env.get_template(template).render(session=session, **context)
        return HTMLResponse(self.mask(html), status_code=status)

    def session_of(self, request: Request) -> Session | None:
        return self.sessions.current(request.cookies.get(COOKIE))


async def form_of(request: Request) -> dict[str, list[str]]:
    """An ``application/x-www-form-urlencoded`` body (the only kind the console's forms send)."""
    return parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)


def first(form: dict[str, list[str]], name: str, default: str = "") -> str:
    return form.get(name, [default])[0]


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def session_of(request: Request) -> Session:
    """The session the guard found (every route but the login's runs behind it)."""
    session: Session = request.state.session
    return session


def refuse(request: Request, message: str, status: int = 403) -> HTMLResponse:
    return console_of(request).render("message.html", session_of(request), status=status, title="Refused",
                                      message=message)


def not_found(request: Request, message: str) -> HTMLResponse:
    return console_of(request).render("message.html", session_of(request), status=404, title="Not found",
                                      message=message)
