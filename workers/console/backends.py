"""Backends: caps and their use, breaker, the health checks of ``mailops backends check`` and the
drift ``mailops reconcile`` finds (both run on request; their last results are kept in memory)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from workers.backends.registry import build_backends
from workers.cli.backends import check_backend
from workers.console import queries
from workers.console.web import Console, console_of, refuse, session_of
from workers.errors import MailopsError
from workers.tools.reconcile import check as reconcile_check

#: Drifted (or unreadable) targets kept from the last reconcile check.
DRIFT_SHOWN = 200

router = APIRouter()


@router.get("/backends")
def backends(request: Request) -> HTMLResponse:
    console = console_of(request)
    rows = queries.backends(console.client, console.settings)
    return console.render("backends.html", session_of(request), page="backends", rows=rows,
                          checks=console.checks, checked_ms=console.checked_ms, drift=console.drift)


@router.post("/backends/check")
def check(request: Request) -> Response:
    """Run the read-only checks now (any logged-in user: they change nothing)."""
    console = console_of(request)
    configs = list(console.settings.backends.values())
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(configs)))) as pool:
        console.checks = {result.name: result for result in pool.map(check_backend, configs)}
    console.checked_ms = int(time.time() * 1000)
    return RedirectResponse("/backends", status_code=303)


@router.post("/backends/reconcile")
def reconcile(request: Request) -> Response:
    """Start ``mailops reconcile`` (read-only: one panel read per held target) in the background;
    operators only, since it reads every panel."""
    console, session = console_of(request), session_of(request)
    if not session.may_act:
        return refuse(request, f"{session.user} is a viewer: viewers may not start a reconcile check")
    if not console.drift.get("running"):
        console.drift = {"running": True, "started_ms": int(time.time() * 1000), "by": session.user}
        threading.Thread(target=_reconcile, args=(console,), name="console-reconcile", daemon=True).start()
    return RedirectResponse("/backends", status_code=303)


def _reconcile(console: Console) -> None:
    try:
        findings = reconcile_check(console.client, console.settings.keys, build_backends(console.settings.backends))
        counts = Counter(finding.state for finding in findings)
        shown = [f.as_dict() for f in findings if f.state != "ok"][:DRIFT_SHOWN]
        console.drift = {**console.drift, "counts": dict(counts), "findings": shown}
    except (MailopsError, OSError) as exc:
        console.drift = {**console.drift, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        console.drift = {**console.drift, "running": False, "finished_ms": int(time.time() * 1000)}
