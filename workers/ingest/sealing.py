"""Sealed secrets: mailbox passwords never rest in Redis in plain text.

A password in a command's ``args`` is sealed at ingest (or arrives sealed by the producer) and
travels as ``sealed:v1:<base64url>`` through the command record, the queues, the dead letters
and the idempotency fingerprint. :meth:`Sealer.open_command` opens it in memory only, right
before the panel call (see :class:`workers.attempt.executor.Executor`).

``v1`` is AES-SIV (RFC 5297, ``cryptography``'s ``AESSIV``) under the worker's 64-byte sealing
key, with associated data ``b"mailops:v1:" + field name``. AES-SIV is deterministic on purpose:
the same password seals to the same value, so a producer's retry of one command keeps the same
fingerprint (idempotency compares sealed forms; plaintext never enters the hash). The price is
that equal passwords are visibly equal in Redis; nothing else about them is.

The key comes from ``MAILOPS_SEALING_KEY`` (base64 of 64 bytes) or a file named by the
settings; a producer that seals for itself uses the same key and the same format.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from schemas.commands import Command
from schemas.fields import SEALED_PREFIX, SECRET_FIELDS
from workers.errors import CommandError, CommandRejected, ConfigError

logger = logging.getLogger(__name__)

# SEALED_PREFIX, the prefix of every sealed value on the wire and in Redis, is defined with the
# password rule (schemas.fields), which measures sealed values by their own length.
#: Length of a sealing key in bytes (AES-256-SIV).
KEY_BYTES = 64


class OpenedSecret(str):
    """A plaintext secret opened for one panel call; its ``repr`` never shows it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


def decode_key(text: str | bytes) -> bytes:
    """A sealing key from its base64 (standard or url-safe) text form."""
    raw = text.strip() if isinstance(text, bytes) else text.strip().encode("ascii", "replace")
    try:
        key = base64.urlsafe_b64decode(raw.replace(b"+", b"-").replace(b"/", b"_"))
    except (binascii.Error, ValueError):
        raise ConfigError("the sealing key is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise ConfigError(f"the sealing key must be {KEY_BYTES} bytes (base64 of 64 random bytes); it is {len(key)}")
    return key


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


class Sealer:
    """Seals and opens secret fields with the worker's key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ConfigError(f"the sealing key must be {KEY_BYTES} bytes")
        self._aead = AESSIV(key)

    def __repr__(self) -> str:
        return "Sealer(key=***)"

    @staticmethod
    def _aad(field: str) -> list[bytes]:
        return [b"mailops:v1:" + field.encode()]

    def seal(self, plaintext: str, field: str = "password") -> str:
        sealed = self._aead.encrypt(plaintext.encode("utf-8"), self._aad(field))
        return SEALED_PREFIX + base64.urlsafe_b64encode(sealed).decode().rstrip("=")

    def open(self, sealed: str, field: str = "password") -> OpenedSecret:
        """The plaintext of a sealed value; :class:`~workers.errors.CommandError` if it does not open."""
        if not is_sealed(sealed):
            raise CommandError(f"{field} is not sealed")
        body = sealed[len(SEALED_PREFIX):]
        try:
            data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return OpenedSecret(self._aead.decrypt(data, self._aad(field)).decode("utf-8"))
        except (binascii.Error, ValueError, InvalidTag, UnicodeDecodeError):
            raise CommandError(f"{field} is sealed with another key or damaged") from None

    def seal_command(self, command: Command) -> tuple[Command, bool]:
        """The command with every secret arg sealed, and whether any arrived in plain text.

        A value that arrives sealed must open under this worker's key (rule ``sealed``).
        """
        args: dict[str, Any] = dict(command.args)
        plain = False
        for field in SECRET_FIELDS & args.keys():
            value = args[field]
            if not isinstance(value, str):
                continue  # the command's own schema rejects it
            if is_sealed(value):
                try:
                    self.open(value, field)
                except CommandError:
                    raise CommandRejected(f"args.{field}", "sealed", "sealed with another key or damaged") from None
            else:
                args[field] = self.seal(value, field)
                plain = True
        if args == command.args:
            return command, False
        return command.model_copy(update={"args": args}), plain

    def open_command(self, command: Command) -> Command:
        """An in-memory copy of the command with its secret args opened (for the backend only)."""
        opened = {
            field: self.open(value, field)
            for field, value in command.args.items()
            if field in SECRET_FIELDS and is_sealed(value)
        }
        return command.model_copy(update={"args": {**command.args, **opened}}) if opened else command


class SealingGate:
    """Ingest gate: seals secret args before the command is recorded or queued.

    The stream entry that carried a plain-text secret is deleted in the same atomic step that
    admits (or rejects) its command (see ``scripts/admit.lua``), so it never outlives ingest and a
    crash in between loses nothing. Without a sealing key, commands that carry secrets are refused.
    """

    def __init__(self, sealer: Sealer | None) -> None:
        self.sealer = sealer

    def __call__(self, command: Command, entry: Any) -> Command:
        if self.sealer is None:
            for field in SECRET_FIELDS & command.args.keys():
                raise CommandRejected(f"args.{field}", "sealing_unavailable", "this worker has no sealing key; "
                                      "it does not accept secrets")
            return command
        return self.sealer.seal_command(command)[0]
