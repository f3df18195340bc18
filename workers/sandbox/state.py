"""What a sandbox panel knows: accounts, domains, mailboxes, forwarders and their mail settings.

Every mutation goes through :meth:`PanelState.set` (a field of an object), :meth:`PanelState.put`
or :meth:`PanelState.remove` (an entry of a collection), which record a ledger entry only when
something actually changes, so "applied exactly once" is checkable from the ledger alone.
Passwords are kept (and recorded) only as a short SHA-256 fingerprint.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from workers.sandbox.ledger import Change, Ledger


def fingerprint(password: str) -> str:
    """What the sandbox stores instead of a password: enough to compare, useless to log in."""
    return hashlib.sha256(password.encode("utf-8")).hexdigest()[:16]


@dataclass
class Account:
    """One cPanel account (or BrainyCP host user)."""

    user: str
    domain: str
    #: Account-level outgoing mail: ``active`` or ``suspended``.
    outgoing: str = "active"
    #: Account-level outgoing hold (mail queued, not delivered).
    hold: bool = False
    #: Account-level incoming mail: ``active`` or ``suspended``.
    incoming: str = "active"
    #: Where the account's own mail is forwarded (comma list; empty = not forwarded).
    forward_to: str = ""
    #: How many times its mailbox sessions were terminated.
    sessions_terminated: int = 0
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class Domain:
    """One mail domain and its owner."""

    name: str
    owner: str
    spf: bool = False
    dkim: bool = False
    #: The SPF TXT record cPanel's ``EmailAuth::install_spf_records`` installed ("" = none).
    spf_record: str = ""


@dataclass
class Mailbox:
    """One mailbox; ``password`` is a :func:`fingerprint`."""

    address: str
    password: str
    quota: str = "0"
    outgoing: str = "active"
    hold: bool = False
    incoming: str = "active"
    login: str = "active"

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]


def forward_line(key: str) -> tuple[str, str]:
    """(source, destination) of a forwarder key, without its copy number."""
    source, _, target = key.partition("=>")
    return source, target.partition("#")[0]


class PanelState:
    """The data of one sandbox panel, guarded by one lock."""

    def __init__(self, panel: str, ledger: Ledger | None = None) -> None:
        self.panel = panel
        self.ledger = ledger or Ledger()
        self.lock = threading.RLock()
        self.accounts: dict[str, Account] = {}
        self.domains: dict[str, Domain] = {}
        self.mailboxes: dict[str, Mailbox] = {}
        #: ``source=>destination`` -> ``fwd`` (a duplicate line ``source=>destination#2``, ...).
        self.forwarders: dict[str, str] = {}
        #: Adding a forwarder that exists appends another line for it, as cPanel's valiases file
        #: may: a client that re-sends ``add_forwarder`` after a lost answer makes duplicates.
        self.append_duplicates = False
        self._withheld = _Withheld()

    @contextlib.contextmanager
    def withheld(self) -> Iterator[list[Callable[[], object]]]:
        """Within it, this thread's mutations are collected instead of applied (each reported as a
        change to its caller): a lying panel drops them, a late one applies them afterwards."""
        self._withheld.changes = []
        try:
            yield self._withheld.changes
        finally:
            self._withheld.changes = None

    def _withhold(self, change: Callable[[], object]) -> bool:
        collected = self._withheld.changes
        if collected is None:
            return False
        collected.append(change)
        return True

    def add_account(self, user: str, domain: str | None = None) -> Account:
        with self.lock:
            account = Account(user=user, domain=domain or f"{user}.example")
            self.accounts[user] = account
            self.domains[account.domain] = Domain(account.domain, user)
            return account

    def add_mailbox(self, address: str, password: str = "seed-password", quota: str = "0") -> Mailbox:
        """Seed a mailbox (not recorded in the ledger)."""
        with self.lock:
            mailbox = Mailbox(address.lower(), fingerprint(password), quota)
            self.mailboxes[mailbox.address] = mailbox
            return mailbox

    def owner_of(self, domain: str) -> str | None:
        with self.lock:
            found = self.domains.get(domain.lower())
            return found.owner if found else None

    def forwarders_of(self, source: str) -> list[str]:
        """Where ``source`` is forwarded, one entry per line (duplicates included)."""
        with self.lock:
            return sorted(forward_line(k)[1] for k in self.forwarders if forward_line(k)[0] == source.lower())

    def forwarder_key(self, source: str, target: str) -> str:
        """The key a new ``source`` -> ``target`` line is stored under (a numbered copy when it
        exists and duplicates are appended)."""
        key = f"{source}=>{target}"
        with self.lock:
            copy = 1
            while self.append_duplicates and (key if copy == 1 else f"{key}#{copy}") in self.forwarders:
                copy += 1
            return key if copy == 1 else f"{key}#{copy}"

    def set(self, obj: Any, attr: str, value: Any, *, target: str, function: str) -> bool:
        """Set ``obj.attr`` (or ``obj[attr]`` for dicts); record and return True if it changed."""
        if self._withhold(lambda: self.set(obj, attr, value, target=target, function=function)):
            return True
        with self.lock:
            old = obj.get(attr) if isinstance(obj, dict) else getattr(obj, attr)
            if old == value:
                return False
            if isinstance(obj, dict):
                obj[attr] = value
            else:
                setattr(obj, attr, value)
            self.ledger.record(Change(self.panel, target, attr, old, value, function))
            return True

    def put(self, mapping: dict[str, Any], key: str, value: Any, *, kind: str, function: str) -> bool:
        """Add ``mapping[key]`` if absent; record ``kind`` going from absent to present."""
        if self._withhold(lambda: self.put(mapping, key, value, kind=kind, function=function)):
            return True
        with self.lock:
            if key in mapping:
                return False
            mapping[key] = value
            self.ledger.record(Change(self.panel, key, kind, None, "present", function))
            return True

    def remove(self, mapping: dict[str, Any], key: str, *, kind: str, function: str) -> bool:
        """Delete ``mapping[key]`` if present; record ``kind`` going from present to absent."""
        if self._withhold(lambda: self.remove(mapping, key, kind=kind, function=function)):
            return True
        with self.lock:
            if key not in mapping:
                return False
            del mapping[key]
            self.ledger.record(Change(self.panel, key, kind, "present", None, function))
            return True


class _Withheld(threading.local):
    """The mutations a thread is collecting instead of applying (``None``: it applies them)."""

    changes: list[Callable[[], object]] | None = None
