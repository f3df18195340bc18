"""The console's ASGI app: the routers of each page group behind one guard (login, CSRF, headers)."""

from __future__ import annotations

from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from workers.console import backends, batches, commands, holds, letters, login, overview
from workers.console.auth import csrf_ok
from workers.console.web import HERE, SECURITY_HEADERS, Console, first, form_of
from workers.settings import Settings

#: Paths open without a session.
PUBLIC = ("/login", "/healthz")


def create_app(settings: Settings, client: redis.Redis, *, secure_cookies: bool | None = True) -> FastAPI:
    """The console. ``secure_cookies``: mark the session cookie ``Secure`` always (``True``), never
    (``False``), or (``None``) when the login came over https, directly or through a proxy on
    loopback that says so (``X-Forwarded-Proto``, which uvicorn trusts from loopback only)."""
    console = Console(settings, client, secure_cookies=secure_cookies)
    app = FastAPI(title="mailops console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.console = console
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (login, overview, commands, letters, holds, batches, backends):
        app.include_router(module.router)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        """No anonymous access: pages send strangers to the login, other requests get 401; every
        POST but the login's must carry the session's CSRF token."""
        path = request.url.path
        public = path in PUBLIC or path.startswith("/static/")
        session = None if public else console.session_of(request)
        response: Response
        if not public and session is None:
            page = request.method == "GET" and not path.endswith(".json") and not path.startswith("/live/")
            response = (RedirectResponse("/login", status_code=303) if page
                        else JSONResponse({"error": "log in first"}, status_code=401))
        elif request.method == "POST" and session is not None and not csrf_ok(
                session, first(await form_of(request), "csrf")):
            response = JSONResponse({"error": "missing or wrong CSRF token"}, status_code=403)
        else:
            request.state.session = session
            response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    return app
