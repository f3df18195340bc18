"""Batches: the list (from the batch index) and one batch's progress, counts and failures."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from workers.cli.batch import read_status
from workers.console import queries
from workers.console.web import console_of, not_found, session_of

router = APIRouter()


@router.get("/batches")
def batches(request: Request, offset: int = 0) -> HTMLResponse:
    console = console_of(request)
    page = queries.batches(console.client, console.settings.keys, max(0, offset))
    return console.render("batches.html", session_of(request), page="batches", result=page)


@router.get("/batches/{batch_id}")
def batch(request: Request, batch_id: str) -> HTMLResponse:
    console = console_of(request)
    status = read_status(console.client, console.settings.keys, batch_id, max_failures=100)
    if status is None:
        return not_found(request, f"no batch {batch_id}")
    file: Any = console.client.hget(console.settings.keys.batch(batch_id), "file")
    return console.render("batch.html", session_of(request), page="batches", b=status,
                          file=file.decode() if file else None)
