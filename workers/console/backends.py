"""Backends: caps and their use, breaker, and the health checks of ``mailops backends check``."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from workers.cli.backends import check_backend
from workers.console import queries
from workers.console.web import console_of, session_of

router = APIRouter()


@router.get("/backends")
def backends(request: Request) -> HTMLResponse:
    console = console_of(request)
    rows = queries.backends(console.client, console.settings)
    return console.render("backends.html", session_of(request), page="backends", rows=rows,
                          checks=console.checks, checked_ms=console.checked_ms)


@router.post("/backends/check")
def check(request: Request) -> Response:
    """Run the read-only checks now (any logged-in user: they change nothing)."""
    console = console_of(request)
    configs = list(console.settings.backends.values())
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(configs)))) as pool:
        console.checks = {result.name: result for result in pool.map(check_backend, configs)}
    console.checked_ms = int(time.time() * 1000)
    return RedirectResponse("/backends", status_code=303)
