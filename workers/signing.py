"""Command signatures: HMAC-SHA256 over a canonical form of the command.

Canonical form: the command's JSON object without its ``signature`` field, keys sorted at every
level, no insignificant whitespace, UTF-8 (what ``json.dumps(obj, sort_keys=True,
separators=(",", ":"), ensure_ascii=False)`` produces). The signature is the lower-case hex
HMAC-SHA256 of those bytes under the producer's key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson


def canonical_form(command: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in command.items() if k != "signature"}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def sign(command: Mapping[str, Any], key: bytes) -> str:
    return hmac.new(key, canonical_form(command), hashlib.sha256).hexdigest()


def verify(command: Mapping[str, Any], key: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(command, key), signature)
