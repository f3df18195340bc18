"""The one settings object.

The environment and the backends file are read here and nowhere else: :meth:`Settings.from_env`
is the edge. Everything below it receives a :class:`Settings` instance.

Environment variables (all optional):

``MAILOPS_REDIS_URL``
    Redis to use. Unset: ``mailops`` starts a private embedded Redis and stops it on exit.
``MAILOPS_CONFIG``
    Path of the backends file (TOML). See ``deploy/mailops.example.toml``.
``MAILOPS_COMMANDS_STREAM`` / ``MAILOPS_EVENTS_STREAM``
    Stream names; the defaults are part of the wire contract.
``MAILOPS_KEY_PREFIX``
    Prefix of every other Redis key (default ``mailops``).

Backend credentials never live in the backends file: each backend names an environment
variable (``token_env``) or a file (``token_file``) that holds them.
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
    backends: dict[str, BackendConfig] = Field(default_factory=dict)

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
        }
        for var, field in mapping.items():
            if env.get(var):
                values[field] = env[var]
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None


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
    return values


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
