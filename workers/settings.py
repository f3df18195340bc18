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
    Base64 of the 64-byte key that seals passwords at rest (see :mod:`workers.ingest.sealing`); the
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
from typing import Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
)

from workers import constants
from workers.backends import registry
from workers.errors import ConfigError
from workers.settings_models import (
    OPERATOR_PREFIX,
    BackendConfig,
    ConsoleConfig,
    ConsoleRole,
    ConsoleUser,
    OperatorAction,
    OperatorConfig,
    ProducerConfig,
)

__all__ = ["OPERATOR_PREFIX", "BackendConfig", "ConfigFile", "ConsoleConfig", "ConsoleRole",
           "ConsoleUser", "OperatorAction", "OperatorConfig", "ProducerConfig", "Settings"]

M = TypeVar("M", bound=BaseModel)


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
        _check_kind(path, where, table, backends[name].kind)
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


def _check_kind(path: Path, where: str, table: Mapping[str, Any], kind: str) -> None:
    """The kind is one of the registry's panels, with the login its panel needs."""
    panels = {panel.kind: panel for panel in registry.PANELS}
    panel = panels.get(kind)
    if panel is None:
        raise ConfigError(f"{_at(path, where, 'kind')}: unknown panel kind {kind!r}{_did_you_mean(kind, panels)}")
    if panel.username_means and "username" not in table:
        raise ConfigError(f"{_at(path, where)}: username: required for a {kind} backend ({panel.username_means}); "
                          "only a kind with a default login (whm: root) may leave it out")


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
    from workers.ingest.sealing import decode_key

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
