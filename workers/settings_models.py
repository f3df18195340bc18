"""The tables of the backends file as models: a panel server (:class:`BackendConfig`), a producer
(:class:`ProducerConfig`), an operator (:class:`OperatorConfig`) and the console's users
(:class:`ConsoleConfig`). :mod:`workers.settings` reads
the file into them (and re-exports them)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from workers import constants


class BackendConfig(BaseModel):
    """One panel server the worker may call."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    #: A panel kind of ``workers.backends.registry.PANELS``; :mod:`workers.settings` refuses any other.
    kind: str
    #: Base URL, e.g. ``https://whm1.example.net:2087``.
    url: str
    #: Login sent with the token (WHM ``root``/reseller, cPanel user, BrainyCP panel login). A kind
    #: whose backend class names ``username_means`` must be given one in the file (only WHM has a default).
    username: str = "root"
    #: The token or password, resolved from ``token_env``/``token_file`` at load time.
    token: SecretStr = Field(default=SecretStr(""), exclude=True)
    token_env: str | None = None
    token_file: str | None = None
    #: Seconds to wait for a connection and for an answer.
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    #: Seconds one call may take in all, from connecting to the answer's last byte (a panel that
    #: trickles its answer is cut off here); unset = ``connect_timeout + read_timeout``.
    call_deadline: float | None = Field(default=None, gt=0)
    #: Largest answer body read from the panel, in bytes; a longer one fails the call as a
    #: transient ``answer_too_large`` (reading stops at the cap).
    max_answer_bytes: int = Field(default=1024 * 1024, ge=1024)
    #: TLS certificate verification; on unless the file says otherwise.
    verify_tls: bool = True
    #: A CA bundle to verify this backend against (self-signed panel certificates).
    ca_bundle: str | None = None
    #: Most calls in flight at once on this backend, across all workers and hosts.
    max_concurrency: int = Field(default=8, ge=1, le=1024)
    #: Most calls started per second on this backend, across all workers and hosts (0 = no cap).
    max_rate: float = Field(default=0.0, ge=0)
    #: Accounts and domains this backend serves; they seed the routing map.
    targets: tuple[str, ...] = ()
    #: Accept a plain ``http://`` URL (the token then crosses the network unencrypted).
    allow_insecure_http: bool = False
    #: Read every change back from the panel before reporting it (:mod:`workers.attempt.verification`).
    verify: bool = True
    #: Seconds a read-back keeps re-reading a change the panel answered OK but does not show yet
    #: (cPanel queues some work behind its answer); never a second change call.
    verify_grace_s: float = Field(default=2.0, ge=0, le=60)

    @field_validator("url")
    @classmethod
    def _url_has_scheme_and_host(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL with a host, e.g. https://whm1.example.net:2087")
        return url

    @model_validator(mode="after")
    def _field_rules(self, info: ValidationInfo) -> BackendConfig:
        # Backends built in code (tests, the demo's loopback sandboxes) skip this; the file does not.
        from_file = isinstance(info.context, dict) and info.context.get("from_file")
        if from_file and self.is_insecure and not self.allow_insecure_http:
            raise ValueError("url: plain http:// sends the token unencrypted; use https:// "
                             "or set allow_insecure_http = true")
        return self

    @property
    def is_insecure(self) -> bool:
        """Whether calls go over plain HTTP."""
        return urlsplit(self.url).scheme == "http"
    #: The SPF record ``onspf`` installs on a cPanel backend (``EmailAuth::install_spf_records``
    #: requires one); README "Configuration" says what it means and how to change it.
    spf_record: str = Field(default=constants.DEFAULT_SPF_RECORD, pattern=r"^v=spf1( [\x21-\x7e]+)*$", max_length=450)
    #: ``onspf`` on cPanel reads the domain's record before installing, to skip an install that is
    #: already so and name a record it replaces: one read more per change (README "SPF policy").
    spf_read_first: bool = False

    def __repr__(self) -> str:
        return f"BackendConfig(name={self.name!r}, kind={self.kind!r}, url={self.url!r})"

    @property
    def deadline(self) -> float:
        """The longest one panel call can take (:attr:`call_deadline` or its default)."""
        return self.call_deadline if self.call_deadline is not None else self.connect_timeout + self.read_timeout


class ProducerConfig(BaseModel):
    """One producer allowed to send commands, and what it may do (see :mod:`workers.ingest.auth`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    #: The HMAC key, resolved from ``key_env``/``key_file`` at load time.
    key: SecretStr = Field(default=SecretStr(""), exclude=True)
    key_env: str | None = None
    key_file: str | None = None
    #: Commands and backends this producer may use; ``"*"`` means any. Empty means none.
    commands: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()
    #: Whether it may target the panels' system accounts (root, nobody, cpanel).
    allow_system_accounts: bool = False
    #: Hold reasons it may place and lift (``suspend_*``/``unsuspend_*``); empty = its own name only.
    reasons: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"ProducerConfig(name={self.name!r}, commands={self.commands!r}, backends={self.backends!r})"


#: What an operator may do from the CLI (``[operators.NAME] actions``).
OperatorAction = Literal["publish", "holds.release", "reconcile.apply", "dlq.replay", "bulk"]
#: The producer name an operator's commands carry on the wire: ``operator.NAME``.
OPERATOR_PREFIX = "operator."


class OperatorConfig(BaseModel):
    """A person (or script) running the ``mailops`` CLI: a key, the actions and hold reasons allowed.

    Its commands travel as producer ``operator.NAME`` and are verified with this key at ingest.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    key: SecretStr = Field(default=SecretStr(""), exclude=True)
    key_env: str | None = None
    key_file: str | None = None
    actions: tuple[OperatorAction, ...] = ()
    #: Hold reasons it may place and lift (a forced release names the reason); empty = ``operator.NAME`` only.
    reasons: tuple[str, ...] = ()
    #: Backends its commands may use; ``"*"`` means any.
    backends: tuple[str, ...] = ("*",)

    @property
    def producer(self) -> str:
        """The producer name its commands carry."""
        return f"{OPERATOR_PREFIX}{self.name}"

    def __repr__(self) -> str:
        return f"OperatorConfig(name={self.name!r}, actions={self.actions!r}, reasons={self.reasons!r})"


#: What a console user may do: ``viewer`` reads every page, ``operator`` also acts (as an operator).
ConsoleRole = Literal["viewer", "operator"]


class ConsoleUser(BaseModel):
    """A person allowed into the operator console (``[console.users.NAME]``).

    An ``operator`` acts as ``[operators.<operator>]`` (default: the same name): its key signs what
    the console issues, its ``actions`` bound what the console lets the user do, and the audit
    stream records the console user's name.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    role: ConsoleRole
    #: An argon2 hash (``mailops console hash-password``), inline or from ``password_hash_env``/``_file``.
    password_hash: SecretStr = Field(default=SecretStr(""), exclude=True)
    password_hash_env: str | None = None
    password_hash_file: str | None = None
    operator: str | None = None

    @property
    def operator_name(self) -> str:
        return self.operator or self.name

    def __repr__(self) -> str:
        return f"ConsoleUser(name={self.name!r}, role={self.role!r})"


class ConsoleConfig(BaseModel):
    """The operator console (``[console]``): its users and session cookie."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    users: dict[str, ConsoleUser] = Field(default_factory=dict)
    #: Mark the session cookie ``Secure``; unset = on, except for plain-http logins on a loopback address.
    secure_cookies: bool | None = None
    #: Seconds a console session lasts after login.
    session_ttl_s: int = Field(default=8 * 3600, ge=60)
    #: Failed logins of one user per minute before further attempts are refused for that minute.
    max_failed_logins: int = Field(default=10, ge=1)
