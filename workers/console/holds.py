"""Holds: who holds which target on which backend, and an operator's release with a reason."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from workers.console import actions, queries
from workers.console.web import console_of, first, form_of, refuse, session_of
from workers.errors import CommandError

router = APIRouter()


@router.get("/holds")
def holds(request: Request, target: str = "", backend: str = "", offset: int = 0) -> HTMLResponse:
    console = console_of(request)
    page = queries.holds(console.client, console.settings, target=target.strip(), backend=backend,
                         offset=max(0, offset))
    return console.render("holds.html", session_of(request), page="holds", result=page,
                          params={"target": target, "backend": backend}, backends=sorted(console.settings.backends))


@router.post("/holds/release")
async def release(request: Request) -> Response:
    console, session = console_of(request), session_of(request)
    if not session.may_act:
        return refuse(request, f"{session.user} is a viewer: viewers may not release holds")
    form = await form_of(request)
    try:
        body = actions.release(console.client, console.settings, session.user, backend=first(form, "backend"),
                               target=first(form, "target"), aspect=first(form, "aspect"),
                               reason=first(form, "reason"), why=first(form, "why"))
    except actions.Refused as exc:
        return refuse(request, str(exc))
    except CommandError as exc:
        return refuse(request, str(exc), 409)
    return RedirectResponse(f"/commands/{body['id']}", status_code=303)
