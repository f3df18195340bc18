"""The overview page, its live region (polled every 2 s by console.js) and its JSON."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from workers.console import queries
from workers.console.web import console_of, session_of

router = APIRouter()


@router.get("/")
def overview(request: Request) -> HTMLResponse:
    console = console_of(request)
    data = queries.overview(console.client, console.settings)
    return console.render("overview.html", session_of(request), page="overview", data=data)


@router.get("/live/overview")
def overview_live(request: Request) -> HTMLResponse:
    console = console_of(request)
    data = queries.overview(console.client, console.settings)
    return console.render("_overview_live.html", session_of(request), data=data)


@router.get("/overview.json")
def overview_json(request: Request) -> Response:
    console = console_of(request)
    data = console.clean(queries.overview(console.client, console.settings))
    return Response(console.mask(orjson.dumps(data).decode()), media_type="application/json")
