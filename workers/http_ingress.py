"""HTTP ingress for webhooks: ``POST /v1/commands`` puts a command on the commands stream.

* ``POST /v1/commands`` takes the command as JSON and the ``Idempotency-Key`` header as its id
  (a body ``id``, if any, must equal it). The body is validated as ingest will validate it and
  added to the commands stream as it is, signature included: ingest checks signatures, so a
  producer signs the command *with* its ``id`` (= the Idempotency-Key). Answers ``202`` with the
  id, or ``400``/``422`` with the ``field`` and ``rule`` at fault.
* ``GET /v1/commands/{id}`` answers the command's status from its record (``404`` until ingest
  has admitted it).
* ``GET /healthz`` answers ``200`` when Redis answers.

The OpenAPI document is served at ``/openapi.json``.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
import redis
from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas.commands import Priority, validate_command
from schemas.events import ErrorInfo
from schemas.fields import CommandId, Name, StreamName
from workers import __version__, constants
from workers.errors import CommandRejected
from workers.settings import Settings


class CommandIn(BaseModel):
    """A command as a webhook sends it; the id comes from the Idempotency-Key header."""

    model_config = ConfigDict(extra="forbid")

    id: CommandId | None = Field(default=None, description="optional; must equal the Idempotency-Key.")
    command: str = Field(description="what to do, e.g. suspend_outgoing.")
    backend: Name | None = None
    args: dict[str, Any] = Field(description="the command's own fields, e.g. {\"user\": \"example\"}.")
    producer: Name
    issued_at: str | None = Field(default=None, description="RFC 3339 with zone; defaults to arrival time.")
    reply_to: StreamName | None = None
    priority: Priority | None = None
    seq: int | None = Field(default=None, ge=0)
    reason: Name | None = None
    signature: str | None = Field(default=None, max_length=256, description="HMAC-SHA256 (see workers.signing).")


class Submitted(BaseModel):
    id: str
    status: Literal["submitted"] = "submitted"
    status_url: str


class Problem(BaseModel):
    error: ErrorInfo


class CommandStatus(BaseModel):
    id: str
    status: str = Field(description="queued, running, retrying, or the terminal status.")
    attempts: int
    outcome: dict[str, Any] | None = Field(default=None, description="the terminal event, once it ended.")


class Health(BaseModel):
    status: Literal["ok"] = "ok"


def problem(status: int, field: str, rule: str, message: str) -> JSONResponse:
    error = ErrorInfo(kind="rejected", field=field, rule=rule, message=message)
    return JSONResponse(status_code=status, content={"error": error.model_dump(exclude_none=True)})


PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "missing or malformed Idempotency-Key or body"},
    422: {"model": Problem, "description": "the command is invalid: error.field and error.rule say why"},
}


def create_app(settings: Settings, client: redis.Redis) -> FastAPI:
    """The ingress app for one Redis (the caller owns the client)."""
    app = FastAPI(title="mailops ingress", version=__version__,
                  description="Send mail-account commands to mailops over HTTP.")
    keys = settings.keys

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        loc = [str(p) for p in err.get("loc", ())]
        where = loc[0] if loc else "body"
        field = ".".join(loc[1:]) or where
        status = 422 if where == "body" and err.get("type") not in {"json_invalid", "model_attributes_type"} else 400
        return problem(status, field, str(err.get("type", "invalid")), str(err.get("msg", "invalid")))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        reply = problem(exc.status_code, "body" if exc.status_code == 400 else "request", "http", str(exc.detail))
        reply.headers.update(exc.headers or {})
        return reply

    @app.post("/v1/commands", status_code=202, response_model=Submitted, responses=PROBLEMS)
    def submit(body: CommandIn, idempotency_key: str = Header(
            ..., alias="Idempotency-Key", description="the command id (the producer's idempotency key)")) -> Any:
        """Validate a command and add it to the commands stream."""
        if body.id is not None and body.id != idempotency_key:
            return problem(422, "id", "idempotency_key_mismatch", "the body id differs from the Idempotency-Key")
        data = body.model_dump(exclude_none=True) | {"id": idempotency_key}
        try:
            validate_command(data)
        except CommandRejected as exc:
            status = 400 if exc.field == "id" else 422
            return problem(status, "Idempotency-Key" if exc.field == "id" else exc.field, exc.rule, exc.message)
        client.xadd(settings.commands_stream, {constants.BODY_FIELD: orjson.dumps(data)})
        return Submitted(id=idempotency_key, status_url=f"/v1/commands/{idempotency_key}")

    @app.get("/v1/commands/{command_id}", response_model=CommandStatus,
             responses={404: {"model": Problem, "description": "no such command (yet)"}})
    def command_status(command_id: str) -> Any:
        """The command's status from its record."""
        raw: Any = client.hmget(keys.command(command_id), "status", "attempts", "outcome")
        state, attempts, outcome = raw
        if state is None:
            return problem(404, "id", "unknown", f"no command {command_id!r} (not admitted yet, or expired)")
        return CommandStatus(id=command_id, status=state.decode(), attempts=int(attempts or 0),
                             outcome=orjson.loads(outcome) if outcome else None)

    @app.get("/healthz", response_model=Health, responses={503: {"model": Problem, "description": "Redis down"}})
    def healthz() -> Any:
        """200 when Redis answers."""
        try:
            client.ping()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            return JSONResponse(status_code=503, content={"error": {"kind": "redis", "message": str(exc)}})
        return Health()

    return app
