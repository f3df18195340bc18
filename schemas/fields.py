"""Constrained field types shared by the command models, and the input rules behind them.

Each type is an ``Annotated`` type so the JSON Schema files carry the same rules a non-Python
producer must follow; the checks a pattern cannot express (IDNA labels, mixed scripts) are
``AfterValidator`` functions that raise ``PydanticCustomError`` whose type is the rule name
(``idna``, ``homoglyph``, ``control_characters``), so rejections name the rule.

Decisions where the panels leave room:

* Everything is ASCII on the wire. An internationalised domain is accepted only as ``xn--``
  punycode that decodes to a valid IDNA 2008 label whose letters come from one script:
  ``xn--mnchen-3ya`` (münchen) passes, ``xn--pple-43d`` (Cyrillic ``а`` + Latin ``pple``)
  does not. Raw non-ASCII (``аpple.com``) is refused with rule ``ascii``. Whole-script
  confusables (a label written entirely in Cyrillic look-alikes) are valid IDNA and pass.
* A mailbox local part (what cPanel creates) is letters, digits, ``.``, ``_`` and ``-``: no
  ``+`` (sub-addressing is a delivery feature, not an account name) and none of ``& = ? % #``.
  A forward destination may use ``+`` in its local part; never ``|`` pipes or ``:fail:``.
* A quota is a JSON integer of megabytes from 0 to 999,999 (0 is cPanel's spelling of no
  limit), or ``"unlimited"``; numeric strings, floats and booleans are refused.
* No string anywhere in ``args`` may hold control or invisible format characters (line
  breaks, NUL, bidi overrides, zero-width spaces) or the characters that change a query
  string (``& = ? % #``); secrets are only checked for control characters.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

import idna
from pydantic import AfterValidator, Field, StringConstraints
from pydantic_core import PydanticCustomError

#: Accounts a panel treats as the system itself; refused as targets unless a producer is allowed.
SYSTEM_ACCOUNTS: frozenset[str] = frozenset({"root", "nobody", "cpanel"})

#: Argument names that hold secrets: sealed at ingest, exempt from the query-character rule.
SECRET_FIELDS: frozenset[str] = frozenset({"password"})

#: Characters that would change a query string or form body if a backend built one by hand.
QUERY_CHARACTERS = frozenset("&=?%#")

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
#: Labels, then a top-level label of at least two characters that starts with a letter.
_DOMAIN_PATTERN = rf"(?:{_LABEL}\.)+[A-Za-z][A-Za-z0-9-]{{0,61}}[A-Za-z0-9]"
_MAILBOX_LOCAL = r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*"
_FORWARD_LOCAL = r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"


def hostile_character(value: str, *, secret: bool = False) -> str | None:
    """The rule a string breaks by its characters alone, or ``None``.

    ``control_characters`` for anything in Unicode categories Cc/Cf/Zl/Zp (line breaks, NUL,
    bidi overrides, zero-width joiners); ``query_characters`` for ``& = ? % #`` (not checked
    for secrets, which are sent form-encoded and may contain anything printable).
    """
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
            return "control_characters"
    if not secret and any(char in QUERY_CHARACTERS for char in value):
        return "query_characters"
    return None


def walk_strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string inside ``value`` (keys included) with its dotted path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                yield f"{path}.{key}", key
                yield from walk_strings(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from walk_strings(item, f"{path}.{index}")


def _single_script(label: str) -> bool:
    scripts = set()
    for char in label:
        if char.isalpha():
            scripts.add(unicodedata.name(char, "UNKNOWN").split(" ")[0])
    return len(scripts) <= 1


def _check_domain(value: str) -> str:
    for label in value.split("."):
        if not label.lower().startswith("xn--"):
            if label[2:4] == "--":
                raise PydanticCustomError("idna", "label {label} has -- in positions 3-4 but is not xn-- punycode", {"label": label})
            continue
        try:
            decoded = idna.decode(label)
            if idna.encode(decoded).decode("ascii") != label.lower():
                raise idna.IDNAError("does not round-trip")
        except (idna.IDNAError, UnicodeError):
            raise PydanticCustomError("idna", "label {label} is not valid IDNA punycode", {"label": label}) from None
        if not _single_script(decoded):
            raise PydanticCustomError(
                "homoglyph", "label {label} decodes to {decoded}, which mixes scripts", {"label": label, "decoded": decoded}
            )
    return value


def _check_email(value: str) -> str:
    local, _at, domain = value.rpartition("@")
    if len(local) > 64:
        raise PydanticCustomError("local_part_too_long", "the part before the @ has {n} characters; at most 64", {"n": len(local)})
    _check_domain(domain)
    return value


def _check_forward(value: str) -> str:
    return _check_email(value)


def _no_control(value: str) -> str:
    if hostile_character(value, secret=True):
        raise PydanticCustomError("control_characters", "a password may not contain control or invisible characters")
    return value


#: A cPanel account name: lower-case letter first, then letters and digits, at most 16.
CpanelUser = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z][a-z0-9]{0,15}$"),
    Field(description="cPanel account name: a lower-case letter, then up to 15 lower-case letters or digits."),
]

#: A domain name in ASCII (internationalised domains as xn-- punycode of one script).
Domain = Annotated[
    str,
    StringConstraints(max_length=253, pattern=rf"^{_DOMAIN_PATTERN}$"),
    AfterValidator(_check_domain),
    Field(description="domain name, ASCII only (internationalised domains as xn-- punycode)."),
]

#: A mailbox address cPanel hosts: ASCII local part, IDNA domain as xn-- punycode.
EmailAddress = Annotated[
    str,
    StringConstraints(max_length=254, pattern=rf"^{_MAILBOX_LOCAL}@{_DOMAIN_PATTERN}$"),
    AfterValidator(_check_email),
    Field(description="mailbox address, local@domain: letters, digits and . _ - before the @; ASCII domain."),
]

#: Where a forwarder sends mail: an address (``+`` allowed in the local part); no pipes, no :fail:.
ForwardDestination = Annotated[
    str,
    StringConstraints(max_length=254, pattern=rf"^{_FORWARD_LOCAL}@{_DOMAIN_PATTERN}$"),
    AfterValidator(_check_forward),
    Field(description="forward destination address; letters, digits and . _ - + before the @; ASCII domain."),
]

#: A command id (the producer's idempotency key).
CommandId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$"),
    Field(description="the producer's idempotency key: letters, digits and . _ : @ / -"),
]

#: A name of a producer, backend, reason or stream.
Name = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
]

#: A Redis stream name the events are copied to.
StreamName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$"),
]

#: Longest plaintext password, in characters.
PASSWORD_MAX_CHARS = 1024
#: Prefix of a sealed value (:mod:`workers.ingest.sealing`).
SEALED_PREFIX = "sealed:v1:"
#: Longest sealed form of a password: the prefix, then unpadded base64url of the UTF-8 plaintext
#: (at most 4 bytes a character) and AES-SIV's 16-byte tag.
SEALED_PASSWORD_MAX_CHARS = len(SEALED_PREFIX) + -(-(PASSWORD_MAX_CHARS * 4 + 16) * 4 // 3)


def _password_length(value: str) -> str:
    """The 1,024-character rule is the plaintext's; a sealed value has its own, longer length."""
    if not value.startswith(SEALED_PREFIX) and len(value) > PASSWORD_MAX_CHARS:
        raise PydanticCustomError("string_too_long", "a password has at most {max_length} characters",
                                  {"max_length": PASSWORD_MAX_CHARS})
    return value


#: A mailbox password as the producer sends it (sealed at ingest; never stored in plain text).
#: Sealed values (``sealed:v1:...``) are longer than the plaintext they carry: the plaintext is
#: held to 1,024 characters before it is sealed, a sealed value to the length its sealing gives.
Password = Annotated[
    str,
    StringConstraints(min_length=1, max_length=SEALED_PASSWORD_MAX_CHARS),
    AfterValidator(_password_length),
    AfterValidator(_no_control),
    Field(description="mailbox password (at most 1,024 characters), or a sealed:v1: value; sealed at ingest, "
                      "never stored in plain text."),
]

#: A mailbox quota in whole MB (0..999,999; 0 is cPanel's spelling of no limit), or "unlimited".
Quota = Annotated[int, Field(strict=True, ge=0, le=999_999)] | Annotated[str, StringConstraints(pattern=r"^unlimited$")]
