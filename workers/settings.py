"""The one settings object.

The environment and the backends file are read here and nowhere else: :meth:`Settings.from_env`
is the edge. Everything below it receives a :class:`Settings` instance.

Environment variables (all optional):

``MAILOPS_REDIS_URL``
    Redis to use. Unset: ``mailops`` starts a private embedded Redis and stops it on exit.
``MAILOPS_REDIS_SENTINELS`` / ``MAILOPS_REDIS_SENTINEL_MASTER``
    Instead of a URL: Sentinels as ``host:port,host:port`` and the master's name. Same as
    ``MAILOPS_REDIS_URL=redis+sentinel://host:port,host:port/master/0``.
``MAILOPS_CONFIG``
    Path of the backends file (TOML). See ``deploy/mailops.example.toml``.
``MAILOPS_COMMANDS_STREAM`` / ``MAILOPS_EVENTS_STREAM``
    Stream names; the defaults are part of the wire contract.
``MAILOPS_KEY_PREFIX``
    Prefix of every other Redis key (default ``mailops``).
``MAILOPS_SENTRY_DSN``
    Report worker errors to this Sentry DSN (secrets scrubbed).
``MAILOPS_SEALING_KEY``
    Base64 of the 64-byte key that seals passwords at rest (see :mod:`workers.sealing`); the
    file may name another variable (``sealing_key_env``) or a file (``sealing_key_file``).

Backend credentials never live in the backends file: each backend names an environment
variable (``token_env``) or a file (``token_file``) that holds them. The same holds for each
producer's signing key (``[producers.NAME]`` with ``key_env`` or ``key_file``) and each
operator's (``[operators.NAME]``).

The file is checked before anything starts: unknown tables and keys (with a did-you-mean),
empty secrets, a sealing key that is not base64 of 64 bytes, a URL without scheme or host, a
plain ``http://`` URL without ``allow_insecure_http = true``, a cPanel or BrainyCP backend
without ``username``, and allow-list entries that name no command or backend are all refused
with a :class:`~workers.errors.ConfigError` that names the file, the table and the key.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from workers import constants
from workers.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

BackendKind = Literal["whm", "cpanel", "brainycp"]


class BackendConfig(BaseModel):
    """One panel server the worker may call."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: BackendKind
    #: Base URL, e.g. ``https://whm1.example.net:2087``.
    url: str
    #: Login sent with the token (WHM ``root``/reseller, cPanel user, BrainyCP panel login). Only
    #: WHM has a sensible default (``root``); cPanel and BrainyCP backends must name it.
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
    #: Read every change back from the panel before reporting it (:mod:`workers.verification`).
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
        if self.kind != "whm" and "username" not in self.model_fields_set:
            account = "the cPanel account name" if self.kind == "cpanel" else "the panel login"
            raise ValueError(f"username: required for a {self.kind} backend ({account}); only whm defaults to root")
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

    def __repr__(self) -> str:
        return f"BackendConfig(name={self.name!r}, kind={self.kind!r}, url={self.url!r})"

    @property
    def deadline(self) -> float:
        """The longest one panel call can take (:attr:`call_deadline` or its default)."""
        return self.call_deadline if self.call_deadline is not None else self.connect_timeout + self.read_timeout


class ProducerConfig(BaseModel):
    """One producer allowed to send commands, and what it may do (see :mod:`workers.auth`)."""

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


class ConfigFile(BaseModel):
    """The top-level tables a backends file may have (each table's own keys are checked by its model)."""

    model_config = ConfigDict(extra="forbid")

    mailops: dict[str, Any] = Field(default_factory=dict)
    backends: dict[str, dict[str, Any]] = Field(default_factory=dict)
    producers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    operators: dict[str, dict[str, Any]] = Field(default_factory=dict)
    console: dict[str, Any] = Field(default_factory=dict)


class Settings(BaseModel):
    """Everything a mailops process needs to know, resolved once at start-up."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: ``None`` means "start an embedded Redis".
    redis_url: str | None = None
    commands_stream: str = constants.DEFAULT_COMMANDS_STREAM
    events_stream: str = constants.DEFAULT_EVENTS_STREAM
    events_maxlen: int = constants.DEFAULT_EVENTS_MAXLEN
    key_prefix: str = "mailops"
    idempotency_ttl_s: int = Field(default=constants.DEFAULT_IDEMPOTENCY_TTL_S, ge=3 * 24 * 3600)
    heartbeat_timeout_ms: int = Field(default=constants.DEFAULT_HEARTBEAT_TIMEOUT_MS, ge=500)
    ingest_claim_idle_ms: int = Field(default=constants.DEFAULT_INGEST_CLAIM_IDLE_MS, ge=100)
    #: Circuit breaker: consecutive connection failures that open it, and ms until a probe.
    breaker_failures: int = Field(default=constants.DEFAULT_BREAKER_FAILURES, ge=1)
    breaker_cooldown_ms: int = Field(default=constants.DEFAULT_BREAKER_COOLDOWN_MS, ge=50)
    #: Seconds a command waits for a down backend before it is dead-lettered (waiting burns no attempts).
    outage_tolerance_s: float = Field(default=constants.DEFAULT_OUTAGE_TOLERANCE_S, gt=0)
    #: Repeats collapse: a command queued while an identical one of its producer ran ends
    #: ``succeeded``/``already`` without a call, if that call ended at most this long ago (0 = never).
    repeat_window_s: int = Field(default=constants.DEFAULT_REPEAT_WINDOW_S, ge=0)
    #: Attempts kept per command for ``mailops dlq show``.
    history_max: int = Field(default=constants.DEFAULT_HISTORY_MAX, ge=1)
    #: Sentry DSN; unset = no Sentry (``MAILOPS_SENTRY_DSN``).
    sentry_dsn: str | None = None
    backends: dict[str, BackendConfig] = Field(default_factory=dict)
    #: Producers that may send commands, with their keys and allow-lists.
    producers: dict[str, ProducerConfig] = Field(default_factory=dict)
    #: Operators of the CLI, with their keys, actions and hold reasons (``[operators.NAME]``).
    operators: dict[str, OperatorConfig] = Field(default_factory=dict)
    #: Refuse unsigned commands. Turning this off is explicit and logged loudly at start-up.
    require_signatures: bool = True
    #: Seconds a signed command's ``issued_at`` may lie in the past (and ahead, for clock skew).
    replay_window_s: int = Field(default=900, ge=1)
    max_clock_skew_s: int = Field(default=300, ge=0)
    #: The key that seals passwords at rest; ``None`` refuses commands that carry one.
    sealing_key: SecretStr | None = Field(default=None, exclude=True)
    #: The operator console's users and cookie (``[console]``, ``mailops console``).
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)

    def __repr__(self) -> str:
        return f"Settings(redis_url={'set' if self.redis_url else 'embedded'}, backends={sorted(self.backends)})"

    @property
    def keys(self) -> constants.Keys:
        return constants.Keys(self.key_prefix)

    def with_redis_url(self, url: str) -> Settings:
        """A copy that uses the given Redis (e.g. the embedded one just started)."""
        return self.model_copy(update={"redis_url": url})

    def backend(self, name: str) -> BackendConfig:
        from workers.errors import UnknownBackend

        try:
            return self.backends[name]
        except KeyError:
            raise UnknownBackend(f"no backend named {name!r} is configured") from None

    def sender_named(self, producer: str) -> bool:
        """Whether ``producer`` is a configured producer or an operator's ``operator.NAME``."""
        operator = producer.removeprefix(OPERATOR_PREFIX)
        return producer in self.producers or (operator != producer and operator in self.operators)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Build the settings from environment variables and the backends file they name."""
        values: dict[str, Any] = {}
        path = env.get("MAILOPS_CONFIG")
        if path:
            values.update(_load_file(Path(path), env))
        mapping = {
            "MAILOPS_REDIS_URL": "redis_url",
            "MAILOPS_COMMANDS_STREAM": "commands_stream",
            "MAILOPS_EVENTS_STREAM": "events_stream",
            "MAILOPS_KEY_PREFIX": "key_prefix",
            "MAILOPS_SENTRY_DSN": "sentry_dsn",
        }
        for var, field in mapping.items():
            if env.get(var):
                values[field] = env[var]
        if env.get("MAILOPS_SEALING_KEY"):
            values["sealing_key"] = SecretStr(_check_sealing_key("MAILOPS_SEALING_KEY", env["MAILOPS_SEALING_KEY"]))
        if env.get("MAILOPS_REDIS_SENTINELS"):
            values["redis_url"] = _sentinel_url(env)
        try:
            return cls(**values)
        except ValidationError as exc:
            where = (Path(path), "mailops") if path else (None, "")
            raise ConfigError(_describe(exc, *where)) from None


def _sentinel_url(env: Mapping[str, str]) -> str:
    """``MAILOPS_REDIS_SENTINELS`` + ``MAILOPS_REDIS_SENTINEL_MASTER`` as one ``redis+sentinel://`` URL."""
    if env.get("MAILOPS_REDIS_URL"):
        raise ConfigError("set MAILOPS_REDIS_URL or MAILOPS_REDIS_SENTINELS, not both")
    master = env.get("MAILOPS_REDIS_SENTINEL_MASTER", "")
    if not master:
        raise ConfigError("MAILOPS_REDIS_SENTINELS needs MAILOPS_REDIS_SENTINEL_MASTER (the monitored master's name)")
    hosts = ",".join(h.strip() for h in env["MAILOPS_REDIS_SENTINELS"].split(",") if h.strip())
    return f"redis+sentinel://{hosts}/{master}/0"


#: Keys of ``[mailops]``: every setting the file may carry (the rest come from their own tables).
MAILOPS_KEYS = frozenset(Settings.model_fields) - {"backends", "producers", "operators", "sealing_key", "console"} | {
    "sealing_key_env", "sealing_key_file"}


def _load_file(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    try:
        file = ConfigFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, "", ConfigFile, what="table")) from None
    _refuse_unknown(path, "mailops", file.mailops, MAILOPS_KEYS)
    values: dict[str, Any] = dict(file.mailops)
    backends: dict[str, BackendConfig] = {}
    for name, table in file.backends.items():
        where = f"backends.{name}"
        if "token" in table:
            raise ConfigError(f"{_at(path, where, 'token')}: credentials do not belong in the config file; "
                              "use token_env or token_file")
        token = _read_secret(path, where, "token", table, env)
        backends[name] = _build(BackendConfig, path, where, dict(table, name=name, token=SecretStr(token)))
    values["backends"] = backends
    values["producers"] = {name: _build(ProducerConfig, path, f"producers.{name}", _keyed(path, f"producers.{name}",
                                                                                         name, table, env))
                           for name, table in file.producers.items()}
    values["operators"] = {name: _build(OperatorConfig, path, f"operators.{name}", _keyed(path, f"operators.{name}",
                                                                                         name, table, env))
                           for name, table in file.operators.items()}
    for name in values["producers"]:
        if name.startswith(OPERATOR_PREFIX):
            raise ConfigError(f"{path}: [producers.{name}]: names starting {OPERATOR_PREFIX!r} are operators' "
                              "([operators.NAME])")
    for name, producer in values["producers"].items():
        _check_allow_list(path, f"producers.{name}", "commands", producer.commands, _command_names())
        _check_allow_list(path, f"producers.{name}", "backends", producer.backends, backends)
    if file.console:
        values["console"] = _console(path, file.console, env)
    key_env, key_file = values.pop("sealing_key_env", None), values.pop("sealing_key_file", None)
    if key_env or key_file:
        where = _at(path, "mailops", "sealing_key_env" if key_env else "sealing_key_file")
        key = _read_secret(path, "mailops", "sealing_key", {"sealing_key_env": key_env, "sealing_key_file": key_file},
                           env)
        values["sealing_key"] = SecretStr(_check_sealing_key(where, key))
    return values


def _console(path: Path, table: Mapping[str, Any], env: Mapping[str, str]) -> ConsoleConfig:
    """``[console]`` with each user's password hash resolved (inline, or from its env/file)."""
    raw_users = table.get("users", {})
    if not isinstance(raw_users, dict):
        raise ConfigError(f"{_at(path, 'console', 'users')}: must be a table of [console.users.NAME]")
    users = {}
    for name, data in raw_users.items():
        where = f"console.users.{name}"
        if not isinstance(data, dict):
            raise ConfigError(f"{_at(path, where)}: must be a table")
        known = {"role", "password_hash", "password_hash_env", "password_hash_file", "operator"}
        _refuse_unknown(path, where, data, known)
        hashed = str(data["password_hash"]) if data.get("password_hash") else _read_secret(
            path, where, "password_hash", data, env)
        if not hashed.startswith("$argon2"):
            raise ConfigError(f"{_at(path, where, 'password_hash')}: not an argon2 hash "
                              "(make one with `mailops console hash-password`)")
        users[name] = _build(ConsoleUser, path, where, dict(data, name=name, password_hash=SecretStr(hashed)))
    return _build(ConsoleConfig, path, "console", dict(table, users=users))


def _command_names() -> Collection[str]:
    """The command vocabulary (imported late: schemas import this package's errors)."""
    from schemas.commands import COMMANDS

    return COMMANDS


def _at(path: Path, table: str, key: str | None = None) -> str:
    """``config file F, table [T], key 'K'``: where a mistake is."""
    where = f"config file {path}"
    if table:
        where += f", table [{table}]"
    return f"{where}, key {key!r}" if key else where


def _did_you_mean(word: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; known: {', '.join(sorted(known))}" if known else "; none is configured"


def _refuse_unknown(path: Path, table: str, data: Mapping[str, Any], known: Collection[str]) -> None:
    for key in data:
        if key not in known:
            raise ConfigError(f"{_at(path, table, key)}: unknown key {key!r}{_did_you_mean(key, known)}")


def _build(model: type[M], path: Path, table: str, data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data, context={"from_file": True})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, table, model)) from None


def _keyed(path: Path, table: str, name: str, data: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """A producer's or operator's table with its signing key resolved."""
    if "key" in data:
        raise ConfigError(f"{_at(path, table, 'key')}: keys do not belong in the config file; use key_env or key_file")
    return dict(data, name=name, key=SecretStr(_read_secret(path, table, "key", data, env)))


def _read_secret(path: Path, table: str, secret: str, data: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """The secret a table names with ``<secret>_env`` or ``<secret>_file``; never empty."""
    var, file = data.get(f"{secret}_env"), data.get(f"{secret}_file")
    if var:
        where = _at(path, table, f"{secret}_env")
        if str(var) not in env:
            raise ConfigError(f"{where}: environment variable {var} is not set")
        value = env[str(var)]  # used as set (only files are stripped, of their trailing newline)
        if not value.strip():
            raise ConfigError(f"{where}: environment variable {var} is empty")
    elif file:
        where = _at(path, table, f"{secret}_file")
        target = path.parent / str(file)
        try:
            value = target.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read {target}: {exc.strerror}") from None
        if not value:
            raise ConfigError(f"{where}: {target} is empty")
    else:
        raise ConfigError(f"{_at(path, table)}: set {secret}_env or {secret}_file")
    return value


def _check_allow_list(path: Path, table: str, key: str, entries: Collection[str], known: Collection[str]) -> None:
    for entry in entries:
        if entry != "*" and entry not in known:
            kind = "command" if key == "commands" else "configured backend"
            raise ConfigError(f"{_at(path, table, key)}: {entry!r} names no {kind}{_did_you_mean(entry, known)}")


def _check_sealing_key(where: str, text: str) -> str:
    from workers.sealing import decode_key

    try:
        decode_key(text)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return text


def _describe(exc: ValidationError, path: Path | None = None, table: str = "", model: type[BaseModel] | None = None,
              *, what: str = "key") -> str:
    """Pydantic's errors as ``where: what is wrong``, with a did-you-mean for unknown keys."""
    hidden = {"name", "token", "key", "sealing_key"}
    known = [f for f in model.model_fields if f not in hidden] if model else []
    parts = []
    for err in exc.errors():
        key = str(err["loc"][0]) if err["loc"] else None
        rest = ".".join(str(p) for p in err["loc"][1:])
        where = _at(path, table, key) if path is not None else (key or "(root)")
        if rest:
            where += f" (item {rest})"
        if err["type"] == "extra_forbidden" and key is not None:
            label = f"unknown table {key!r}" if what == "table" else f"unknown key {key!r}"
            parts.append(f"{where}: {label}{_did_you_mean(key, known)}")
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            if path is not None and table and key is None:
                where = _at(path, table)
            parts.append(f"{where}: {message}")
    return "; ".join(parts)
