"""Who is logged in: argon2 password checks, sessions in Redis, and a CSRF token per session.

The session cookie is a random token; Redis keeps only its SHA-256 (:meth:`Keys.console_session`),
so someone who can read Redis cannot take over a session. Every POST but the login carries the
session's CSRF token in a form field, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from workers.settings import ConsoleRole, Settings

#: Name of the session cookie.
COOKIE = "mailops_console"
#: Seconds the failed-login counter of a user lasts (the rate limit's window).
LOGIN_WINDOW_S = 60

_hasher = PasswordHasher()
#: Checked when the user is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """An argon2id hash for ``[console.users.NAME] password_hash``."""
    return _hasher.hash(password)


@dataclass(frozen=True)
class Session:
    """A logged-in console user."""

    user: str
    role: ConsoleRole
    csrf: str

    @property
    def may_act(self) -> bool:
        return self.role == "operator"


class Sessions:
    """Login, lookup and logout of console sessions."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.keys = settings.keys

    def login(self, user: str, password: str) -> str | None:
        """A new session's cookie token, or ``None`` (unknown user, wrong password, or too many
        failed attempts of this user in the last minute)."""
        config = self.settings.console
        failures = self.keys.console_logins(user)
        if int(self.client.get(failures) or 0) >= config.max_failed_logins:
            return None
        known = config.users.get(user)
        try:
            _hasher.verify(known.password_hash.get_secret_value() if known else _DUMMY_HASH, password)
            ok = known is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or known is None:
            pipe = self.client.pipeline(transaction=True)
            pipe.incr(failures)
            pipe.expire(failures, LOGIN_WINDOW_S)
            pipe.execute()
            return None
        token = secrets.token_urlsafe(32)
        self.client.hset(self._key(token), mapping={"user": user, "role": known.role,
                                                   "csrf": secrets.token_urlsafe(32)})
        self.client.expire(self._key(token), config.session_ttl_s)
        return token

    def current(self, token: str | None) -> Session | None:
        """The session of a cookie token, if it is live and its user is still configured."""
        if not token:
            return None
        raw: Any = self.client.hgetall(self._key(token))
        data = {k.decode(): v.decode() for k, v in raw.items()}
        user = self.settings.console.users.get(data.get("user", ""))
        if user is None:
            return None
        return Session(user.name, user.role, data["csrf"])

    def flash(self, token: str | None, message: str) -> None:
        """Keep a one-time message for the session's next page (never carried in a URL)."""
        if token and self.client.exists(self._key(token)):  # never revive an expired session's key
            self.client.hset(self._key(token), "flash", message[:1000])

    def take_flash(self, token: str | None) -> str:
        if not token:
            return ""
        pipe = self.client.pipeline(transaction=True)
        pipe.hget(self._key(token), "flash")
        pipe.hdel(self._key(token), "flash")
        raw = pipe.execute()[0]
        return raw.decode() if raw else ""

    def logout(self, token: str | None) -> None:
        if token:
            self.client.delete(self._key(token))

    def _key(self, token: str) -> str:
        return self.keys.console_session(hashlib.sha256(token.encode()).hexdigest())


def csrf_ok(session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf.encode(), str(sent).encode())
