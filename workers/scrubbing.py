"""Keeping secrets out of logs, exceptions and Sentry.

Three layers, each cheap:

* :class:`SecretFilter` is a :class:`logging.Filter` (attach it to handlers) that rewrites a
  record's message and arguments: ``password``/``token``/``secret`` values in JSON, form and
  query-string shapes, panel ``Authorization`` headers, and any secret currently open for a
  panel call (see :func:`opened`).
* :func:`before_send` is a Sentry ``before_send`` hook that applies the same rules to every
  string in the event, and blanks values whose key names a secret (request data, frame
  variables, extra).
* :func:`scrub_exception` rewrites an exception chain's messages in place; the executor calls
  it when a call that held opened secrets fails, so the error stored on the command cannot
  carry them. A call that succeeded is scrubbed too (:func:`scrub_text`, :func:`scrub_value` on
  what is kept of its answer; its data is dropped): a panel may echo its request.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from schemas.fields import SECRET_FIELDS

#: What a redacted value is replaced with.
REDACTED = "[redacted]"

#: Keys whose values are secrets wherever they appear (matched case-insensitively, as substrings):
#: the command arguments that hold secrets (:data:`schemas.fields.SECRET_FIELDS`), then the names
#: panels, HTTP and configuration give theirs. The one list: dead letters redact by it too.
SECRET_KEY_PARTS = (*sorted(SECRET_FIELDS), "passwd", "token", "secret", "authorization", "api_key", "apikey", "cookie",
                    "plaintext", "sealing_key", "private_key")

_KEY_ALT = "|".join(re.escape(part) for part in SECRET_KEY_PARTS)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # "password": "value"  /  'password': 'value'  (JSON and Python reprs)
    (re.compile(rf"""(?i)(["']?[\w-]*(?:{_KEY_ALT})[\w-]*["']?\s*[:=]\s*)(["'])(?:\\.|(?!\2).)*\2"""),
     rf"\1\2{REDACTED}\2"),
    # password=value in forms, query strings and log lines (up to & or whitespace)
    (re.compile(rf"(?i)(\b[\w.-]*(?:{_KEY_ALT})[\w.-]*=)[^&\s'\"]+"), rf"\1{REDACTED}"),
    # panel credentials: "whm root:TOKEN", "cpanel user:TOKEN"
    (re.compile(r"(?i)(\b(?:whm|cpanel)\s+[\w.@-]+:)[A-Za-z0-9._-]{8,}"), rf"\1{REDACTED}"),
    # Authorization: Basic xxx / Bearer xxx
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:basic|bearer)\s+)[A-Za-z0-9+/=._-]+"), rf"\1{REDACTED}"),
)

_lock = threading.Lock()
_active: dict[str, int] = {}


@contextmanager
def opened(secrets: Iterable[str]) -> Iterator[None]:
    """Register secrets that are open in memory (for one panel call) so any log line is scrubbed."""
    values = [s for s in secrets if s]
    with _lock:
        for value in values:
            _active[value] = _active.get(value, 0) + 1
    try:
        yield
    finally:
        with _lock:
            for value in values:
                if _active.get(value, 0) <= 1:
                    _active.pop(value, None)
                else:
                    _active[value] -= 1


def scrub_text(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with secret-looking values and every known open secret replaced."""
    with _lock:
        known = [*_active, *extra]
    for value in sorted(known, key=len, reverse=True):
        if value and value in text:
            text = text.replace(value, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def is_secret_key(key: object) -> bool:
    """Whether a value under ``key`` is a secret (see :data:`SECRET_KEY_PARTS`)."""
    return isinstance(key, str) and any(part in key.lower() for part in SECRET_KEY_PARTS)


def scrub_value(value: Any, extra: Iterable[str] = ()) -> Any:
    """A copy of a JSON-like value with secret keys blanked and every string scrubbed."""
    extra = list(extra)
    if isinstance(value, str):
        return scrub_text(value, extra)
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret_key(k) and v not in (None, "") else scrub_value(v, extra))
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(scrub_value(v, extra) for v in value)
    return value


class SecretFilter(logging.Filter):
    """Rewrites records so no secret reaches a handler; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the raw parts, scrubbed
            message = f"{record.msg} {record.args}"
        record.msg = scrub_text(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            scrub_exception(record.exc_info[1])
            record.exc_text = None
        if record.exc_text:
            record.exc_text = scrub_text(record.exc_text)
        return True


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Sentry ``before_send``: the event with every secret removed."""
    scrubbed: dict[str, Any] = scrub_value(event)
    return scrubbed


def scrub_exception(exc: BaseException, secrets: Iterable[str] = ()) -> None:
    """Rewrite the messages of ``exc`` and its causes in place."""
    values = list(secrets)
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.args = tuple(scrub_text(a, values) if isinstance(a, str) else a for a in current.args)
        message = getattr(current, "message", None)
        if isinstance(message, str):
            current.message = scrub_text(message, values)  # type: ignore[attr-defined]
        current = current.__cause__ or current.__context__


def install(logger: logging.Logger | None = None) -> SecretFilter:
    """Attach a :class:`SecretFilter` to every handler of ``logger`` (default: the root logger)."""
    target = logger or logging.getLogger()
    secret_filter = SecretFilter()
    for handler in target.handlers:
        handler.addFilter(secret_filter)
    return secret_filter
