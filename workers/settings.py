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
producer's signing key (``[producers.NAME]`` with ``key_env`` or ``key_file``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from workers import constants
from workers.errors import ConfigError

BackendKind = Literal["whm", "cpanel", "brainycp"]


class BackendConfig(BaseModel):
    """One panel server the worker may call."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: BackendKind
    #: Base URL, e.g. ``https://whm1.example.net:2087``.
    url: str
    #: Login sent with the token (WHM ``root``/reseller, cPanel user, BrainyCP panel login).
    username: str = "root"
    #: The token or password, resolved from ``token_env``/``token_file`` at load time.
    token: SecretStr = Field(default=SecretStr(""), exclude=True)
    token_env: str | None = None
    token_file: str | None = None
    #: Seconds to wait for a connection and for an answer.
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
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

    def __repr__(self) -> str:
        return f"BackendConfig(name={self.name!r}, kind={self.kind!r}, url={self.url!r})"


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
            values["sealing_key"] = SecretStr(env["MAILOPS_SEALING_KEY"])
        if env.get("MAILOPS_REDIS_SENTINELS"):
            values["redis_url"] = _sentinel_url(env)
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None


def _sentinel_url(env: Mapping[str, str]) -> str:
    """``MAILOPS_REDIS_SENTINELS`` + ``MAILOPS_REDIS_SENTINEL_MASTER`` as one ``redis+sentinel://`` URL."""
    if env.get("MAILOPS_REDIS_URL"):
        raise ConfigError("set MAILOPS_REDIS_URL or MAILOPS_REDIS_SENTINELS, not both")
    master = env.get("MAILOPS_REDIS_SENTINEL_MASTER", "")
    if not master:
        raise ConfigError("MAILOPS_REDIS_SENTINELS needs MAILOPS_REDIS_SENTINEL_MASTER (the monitored master's name)")
    hosts = ",".join(h.strip() for h in env["MAILOPS_REDIS_SENTINELS"].split(",") if h.strip())
    return f"redis+sentinel://{hosts}/{master}/0"


def _load_file(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    values: dict[str, Any] = dict(raw.get("mailops", {}))
    backends: dict[str, BackendConfig] = {}
    for name, table in raw.get("backends", {}).items():
        if "token" in table:
            raise ConfigError(
                f"backend {name!r}: credentials do not belong in the config file; "
                "use token_env or token_file"
            )
        data = dict(table, name=name)
        data["token"] = SecretStr(_resolve_secret(name, data, env, path.parent))
        try:
            backends[name] = BackendConfig(**data)
        except ValidationError as exc:
            raise ConfigError(f"backend {name!r}: {_describe(exc)}") from None
    values["backends"] = backends
    values["producers"] = _load_producers(raw.get("producers", {}), env, path.parent)
    values["operators"] = _load_operators(raw.get("operators", {}), env, path.parent)
    key_env, key_file = values.pop("sealing_key_env", None), values.pop("sealing_key_file", None)
    if key_env or key_file:
        values["sealing_key"] = SecretStr(_read_secret("the sealing key", key_env, key_file, env, path.parent))
    return values


def _load_producers(tables: Mapping[str, Any], env: Mapping[str, str], base: Path) -> dict[str, ProducerConfig]:
    producers: dict[str, ProducerConfig] = {}
    for name, table in tables.items():
        if "key" in table:
            raise ConfigError(f"producer {name!r}: keys do not belong in the config file; use key_env or key_file")
        if name.startswith(OPERATOR_PREFIX):
            raise ConfigError(f"producer {name!r}: names starting {OPERATOR_PREFIX!r} are operators' ([operators.NAME])")
        what = f"producer {name!r}"
        key = _read_secret(what, table.get("key_env"), table.get("key_file"), env, base)
        try:
            producers[name] = ProducerConfig(**dict(table, name=name, key=SecretStr(key)))
        except ValidationError as exc:
            raise ConfigError(f"{what}: {_describe(exc)}") from None
    return producers


def _load_operators(tables: Mapping[str, Any], env: Mapping[str, str], base: Path) -> dict[str, OperatorConfig]:
    operators: dict[str, OperatorConfig] = {}
    for name, table in tables.items():
        what = f"operator {name!r}"
        if "key" in table:
            raise ConfigError(f"{what}: keys do not belong in the config file; use key_env or key_file")
        key = _read_secret(what, table.get("key_env"), table.get("key_file"), env, base)
        try:
            operators[name] = OperatorConfig(**dict(table, name=name, key=SecretStr(key)))
        except ValidationError as exc:
            raise ConfigError(f"{what}: {_describe(exc)}") from None
    return operators


def _read_secret(what: str, var: Any, file: Any, env: Mapping[str, str], base: Path) -> str:
    if var:
        if str(var) not in env:
            raise ConfigError(f"{what}: environment variable {var} is not set")
        value = env[str(var)]
    elif file:
        try:
            value = (base / str(file)).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{what}: cannot read {base / str(file)}: {exc.strerror}") from None
    else:
        raise ConfigError(f"{what}: set key_env or key_file")
    if not value:
        raise ConfigError(f"{what}: the key is empty")
    return value


def _resolve_secret(name: str, table: Mapping[str, Any], env: Mapping[str, str], base: Path) -> str:
    if table.get("token_env"):
        var = str(table["token_env"])
        if var not in env:
            raise ConfigError(f"backend {name!r}: environment variable {var} is not set")
        return env[var]
    if table.get("token_file"):
        file = base / str(table["token_file"])
        try:
            return file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"backend {name!r}: cannot read token_file {file}: {exc.strerror}") from None
    raise ConfigError(f"backend {name!r}: set token_env or token_file")


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
