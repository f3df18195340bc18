"""HTTP ingress for webhooks: ``POST /v1/commands`` answers synchronously, in Stripe's style.

* ``POST /v1/commands`` takes the command as JSON and the ``Idempotency-Key`` header as its id
  (a body ``id``, if any, must equal it; a producer signs the command *with* that id). The door
  runs the same checks ingest runs (the schema, then the ingest gates: routing, producer
  signature and allow-lists, sealing; :func:`create_app` is given the very gate objects) and
  answers at once:

  ======  ==================================================================================
  status  when
  ======  ==================================================================================
  202     queued (``{"id", "status": "submitted", "status_url"}``), or the key is in flight
  200     the key already ended with the same payload: the stored outcome (``CommandStatus``)
  400     no ``Idempotency-Key``, or a body that is not a JSON object
  401     not authenticated: ``producer``/``unknown``, ``signature``/``missing``|``mismatch``,
          ``issued_at``/``too_old``|``future``|``required``
  403     authenticated, not allowed: ``command``|``backend``|``reason``/``not_allowed``,
          ``args.X``/``system_account``
  409     the key was used for a different payload (``Idempotency-Key``/``conflict``)
  422     the command is invalid (schema, characters, ``backend``/``unknown``|``unroutable``...)
  ======  ==================================================================================

  Every refusal carries ``error.field`` and ``error.rule``, is published as a ``rejected``
  event, kept as the id's rejection record for the idempotency TTL and counted in
  ``mailops_commands_rejected_total``, exactly as ingest does (:func:`workers.ingest.reader.answer_rejection`).
  ``?wait=SECONDS`` (at most 60) holds the answer until the command's terminal event: ``200``
  with its outcome, the refusal's status if ingest refused it, ``202`` if it did not end in time.
* ``GET /v1/commands/{id}`` answers the command's status from its record, or its rejection
  record (``status: rejected``); ``404`` for an id never seen (or expired).
* ``GET /healthz`` answers ``200`` when Redis answers.

The OpenAPI document is served at ``/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import orjson
import redis
from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas.commands import Command, Priority, validate_command
from schemas.events import SCRIPT_TEXTS, ErrorInfo, Event
from schemas.fields import CommandId, Name, StreamName
from workers import __version__, constants
from workers.errors import CommandError, CommandRejected
from workers.ingest.auth import security_gates
from workers.ingest.reader import FINGERPRINT_HEX, Entry, IngestGate, answer_rejection, fingerprint
from workers.ingest.routing import RoutingGate
from workers.settings import Settings
from workers.store.command_store import CommandStore
from workers.tools.producer import Producer, WaitTimeout

#: Longest ``?wait=`` a request may hold its answer (seconds).
MAX_WAIT_S = 60.0
#: Refusals that mean "not authenticated" (401); every other ``not_allowed``/``system_account``
#: refusal of an authenticated producer is 403, the rest 422.
UNAUTHENTICATED = frozenset({("producer", "unknown"), ("signature", "missing"), ("signature", "mismatch"),
                             ("id", "required"), ("issued_at", "required"), ("issued_at", "too_old"),
                             ("issued_at", "future")})
FORBIDDEN_RULES = frozenset({"not_allowed", "system_account"})


class CommandIn(BaseModel):
    """A command as a webhook sends it; the id comes from the Idempotency-Key header."""

    model_config = ConfigDict(extra="forbid")

    id: CommandId | None = Field(default=None, description="optional; must equal the Idempotency-Key.")
    command: str = Field(description="what to do, e.g. suspend_outgoing.")
    backend: Name | None = None
    args: dict[str, Any] = Field(description="the command's own fields, e.g. {\"user\": \"example\"}.")
    producer: Name
    issued_at: str | None = Field(default=None, description="RFC 3339 with zone; required when signed.")
    reply_to: StreamName | None = None
    priority: Priority | None = None
    seq: int | None = Field(default=None, ge=0)
    reason: Name | None = None
    signature: str | None = Field(default=None, max_length=256, description="HMAC-SHA256 (see workers.ingest.signing).")


class Submitted(BaseModel):
    id: str
    status: Literal["submitted"] = "submitted"
    status_url: str


class Problem(BaseModel):
    error: ErrorInfo


class CommandStatus(BaseModel):
    id: str
    status: str = Field(description="queued, running, retrying, or the terminal status (rejected too).")
    attempts: int
    outcome: dict[str, Any] | None = Field(default=None, description="the terminal event, once it ended.")


class Health(BaseModel):
    status: Literal["ok"] = "ok"


def problem(status: int, field: str, rule: str, message: str, kind: str = "rejected") -> JSONResponse:
    error = ErrorInfo(kind=kind, field=field, rule=rule, message=message)
    return JSONResponse(status_code=status, content={"error": error.model_dump(exclude_none=True)})


def status_for(error: ErrorInfo) -> int:
    """The HTTP status of a refusal, from its field and rule."""
    if (error.field, error.rule) in UNAUTHENTICATED:
        return 401
    if error.rule in FORBIDDEN_RULES:
        return 403
    if error.field == "id":
        return 400
    return 422


def refusal(event: Event) -> JSONResponse:
    """A ``rejected`` event as its HTTP answer."""
    error = event.error or ErrorInfo(kind="rejected", message="rejected")
    return problem(status_for(error), error.field or "body", error.rule or error.kind, error.message, kind=error.kind)


PROBLEMS: dict[int | str, dict[str, Any]] = {
    200: {"model": CommandStatus, "description": "this Idempotency-Key already ended with the same payload "
                                                 "(or ended within ?wait): its outcome"},
    400: {"model": Problem, "description": "missing or malformed Idempotency-Key or body"},
    401: {"model": Problem, "description": "not authenticated: unknown producer, missing or wrong signature, stale "
                                           "issued_at (error.field and error.rule say which)"},
    403: {"model": Problem, "description": "the producer may not do this: command, backend or hold reason not "
                                           "allowed, or a system account"},
    409: {"model": Problem, "description": "this Idempotency-Key was used for a different payload"},
    422: {"model": Problem, "description": "the command is invalid (also an unknown backend or an unroutable "
                                           "target): error.field and error.rule say why"},
}


def default_gates(settings: Settings, client: redis.Redis) -> list[IngestGate]:
    """The ingest gates, as :class:`~workers.runtime.Runtime` builds them (routes are seeded by the workers)."""
    return [RoutingGate(client, settings, seed=False), *security_gates(settings, client)]


class Door:
    """What the endpoints do, for one Redis: the checks, the idempotency answer, the long poll."""

    def __init__(self, settings: Settings, client: redis.Redis, gates: Sequence[IngestGate]) -> None:
        self.settings = settings
        self.client = client
        self.keys = settings.keys
        self.store = CommandStore(client, settings)
        self.gates = list(gates)

    def check(self, data: dict[str, Any]) -> Command | JSONResponse:
        """The command as ingest will admit it, or the refusal's answer (published and recorded as ingest does)."""
        command: Command | None = None
        try:
            command = validate_command(data)
            entry = Entry("", {constants.BODY_FIELD.encode(): orjson.dumps(data)})
            for gate in self.gates:
                command = gate(command, entry)
        except CommandError as exc:
            if isinstance(exc, CommandRejected) and exc.field == "id":
                return problem(400, "Idempotency-Key", exc.rule, exc.message)
            return refusal(answer_rejection(self.store, exc, entry=None, raw=data, command=command))
        return command

    def admitted(self, command: Command) -> JSONResponse | None:
        """The answer for a key already admitted: 409, its stored outcome (200) or in flight (202)."""
        raw: Any = self.client.hmget(self.keys.command(command.id), "fp", "status", "attempts", "outcome")
        fp, state, attempts, outcome = raw
        if state is None:
            return None
        if fp is not None and fp.decode()[:FINGERPRINT_HEX] != fingerprint(command):
            return problem(409, "Idempotency-Key", "conflict",
                           SCRIPT_TEXTS["CONFLICT_TEXT"] % repr(command.id), kind="conflict")
        status = CommandStatus(id=command.id, status=state.decode(), attempts=int(attempts or 0),
                               outcome=orjson.loads(outcome) if outcome else None)
        return JSONResponse(status_code=200 if outcome else 202, content=status.model_dump())

    def submit(self, command: Command, data: dict[str, Any], wait: float) -> JSONResponse | Submitted:
        """Answer from the record if the key is known, else queue the command; long-poll ``wait`` seconds."""
        known = self.admitted(command)
        if known is not None and (wait <= 0 or known.status_code != 202):
            return known
        sender = Producer(self.client, producer=command.producer, commands_stream=self.settings.commands_stream,
                          events_stream=self.settings.events_stream, keys=self.keys)
        if known is None:
            sender.publish_body(data)
        if wait > 0:
            try:
                return self.ended(command.id, sender.wait(command.id, timeout=wait))
            except WaitTimeout:
                pass
        return Submitted(id=command.id, status_url=f"/v1/commands/{command.id}")

    def ended(self, command_id: str, event: Event) -> JSONResponse:
        """The answer for a terminal event: a refusal's status, 409 for a conflict, else 200 with the outcome."""
        if event.status == "rejected":
            return refusal(event)
        if event.status == "conflict":
            return problem(409, "Idempotency-Key", "conflict", event.error.message if event.error else "conflict",
                           kind="conflict")
        raw: Any = self.client.hget(self.keys.command(command_id), "attempts")
        status = CommandStatus(id=command_id, status=event.status, attempts=int(raw or 0),
                               outcome=orjson.loads(event.to_json()))
        return JSONResponse(status_code=200, content=status.model_dump())

    def status(self, command_id: str) -> CommandStatus | JSONResponse:
        """The command's status from its record, or its rejection record; 404 if neither."""
        raw: Any = self.client.hmget(self.keys.command(command_id), "status", "attempts", "outcome")
        state, attempts, outcome = raw
        if state is not None:
            return CommandStatus(id=command_id, status=state.decode(), attempts=int(attempts or 0),
                                 outcome=orjson.loads(outcome) if outcome else None)
        rejection = self.store.rejection(command_id)
        if rejection is None:
            return problem(404, "id", "unknown", f"no command {command_id!r} (never seen, not admitted yet, or expired)")
        return CommandStatus(id=command_id, status="rejected", attempts=0, outcome=orjson.loads(rejection.to_json()))


def create_app(settings: Settings, client: redis.Redis, *, gates: Sequence[IngestGate] | None = None) -> FastAPI:
    """The ingress app for one Redis (the caller owns the client); ``gates`` default to ingest's."""
    app = FastAPI(title="mailops ingress", version=__version__,
                  description="Send mail-account commands to mailops over HTTP; refusals are answered at once.")
    door = Door(settings, client, default_gates(settings, client) if gates is None else gates)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        loc = [str(p) for p in err.get("loc", ())]
        where = loc[0] if loc else "body"
        field = ".".join(loc[1:]) or where
        status = 422 if where in {"body", "query"} and err.get("type") not in {"json_invalid", "model_attributes_type"} else 400
        return problem(status, field, str(err.get("type", "invalid")), str(err.get("msg", "invalid")))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        reply = problem(exc.status_code, "body" if exc.status_code == 400 else "request", "http", str(exc.detail))
        reply.headers.update(exc.headers or {})
        return reply

    @app.post("/v1/commands", status_code=202, response_model=Submitted, responses=PROBLEMS)
    def submit(body: CommandIn, idempotency_key: str = Header(
            ..., alias="Idempotency-Key", description="the command id (the producer's idempotency key)"),
            wait: float = Query(0.0, ge=0, le=MAX_WAIT_S,
                                description="seconds to hold the answer until the command ends (long poll)")) -> Any:
        """Check a command as ingest will, answer a refusal at once, else add it to the commands stream."""
        if body.id is not None and body.id != idempotency_key:
            return problem(422, "id", "idempotency_key_mismatch", "the body id differs from the Idempotency-Key")
        data = body.model_dump(exclude_none=True) | {"id": idempotency_key}
        checked = door.check(data)
        return checked if isinstance(checked, JSONResponse) else door.submit(checked, data, wait)

    @app.get("/v1/commands/{command_id}", response_model=CommandStatus,
             responses={404: {"model": Problem, "description": "no such command (never seen, or expired)"}})
    def command_status(command_id: str) -> Any:
        """The command's status from its record, or its rejection record."""
        return door.status(command_id)

    @app.get("/healthz", response_model=Health, responses={503: {"model": Problem, "description": "Redis down"}})
    def healthz() -> Any:
        """200 when Redis answers."""
        try:
            client.ping()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            return JSONResponse(status_code=503, content={"error": {"kind": "redis", "message": str(exc)}})
        return Health()

    return app
