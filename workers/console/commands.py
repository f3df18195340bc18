"""Commands: search (by id, target, backend, producer, batch; status; time range) and one command's page."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from workers.console import queries
from workers.console.web import console_of, not_found, session_of

router = APIRouter()


def _ms(text: str) -> int | None:
    """A ``datetime-local`` value (read as UTC) in ms, or ``None``."""
    try:
        return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000) if text else None
    except ValueError:
        return None


@router.get("/commands")
def commands(request: Request, by: str = "target", q: str = "", status: str = "", since: str = "",
             until: str = "", offset: int = 0) -> Response:
    if by == "id" and q.strip():
        return RedirectResponse(f"/commands/{quote(q.strip(), safe='@:._-/')}", status_code=303)
    console = console_of(request)
    query = queries.CommandQuery(by, q.strip(), status, _ms(since), _ms(until))
    page = queries.commands(console.client, console.settings.keys, query, max(0, offset))
    params = {"by": by, "q": q, "status": status, "since": since, "until": until}
    return console.render("commands.html", session_of(request), page="commands", result=page, params=params)


@router.get("/commands/{command_id:path}")
def command(request: Request, command_id: str) -> HTMLResponse:
    console = console_of(request)
    data = queries.command(console.client, console.settings, command_id)
    if data is None:
        return not_found(request, f"no command {command_id} (unknown, or its record expired)")
    return console.render("command.html", session_of(request), page="commands", c=data)
