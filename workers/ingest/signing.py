"""Command signatures: HMAC-SHA256 over a canonical form of the command.

Canonical form: the command's JSON object exactly as the producer sends it, without its
``signature`` field, keys sorted at every level, no insignificant whitespace, UTF-8 with
non-ASCII characters and ``/`` left unescaped (what ``json.dumps(obj, sort_keys=True,
separators=(",", ":"), ensure_ascii=False)`` produces for the strings and integers commands
hold). The signature is the lower-case hex HMAC-SHA256 of those bytes under the producer's
key, carried in the command's ``signature`` field. ``README.md`` shows the same in PHP, Go
and shell.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson

#: The command field that carries the signature (left out of the canonical form).
SIGNATURE_FIELD = "signature"


def canonical_form(command: Mapping[str, Any]) -> bytes:
    """The bytes a producer signs: the command without ``signature``, sorted, compact."""
    body = {k: v for k, v in command.items() if k != SIGNATURE_FIELD}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def sign(command: Mapping[str, Any], key: bytes) -> str:
    """The lower-case hex HMAC-SHA256 of the command's canonical form under ``key``."""
    return hmac.new(key, canonical_form(command), hashlib.sha256).hexdigest()


def verify(command: Mapping[str, Any], key: bytes, signature: str) -> bool:
    """Whether ``signature`` is this command's signature under ``key`` (constant-time)."""
    if not isinstance(signature, str) or not signature.isascii():
        return False
    return hmac.compare_digest(sign(command, key), signature.lower())
