"""Login and logout routes (the only routes open to strangers, with ``/static`` and ``/healthz``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from workers.console.auth import COOKIE
from workers.console.web import console_of, first, form_of

router = APIRouter()


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/login")
def login_page(request: Request, failed: int = 0) -> HTMLResponse:
    return console_of(request).render("login.html", None, failed=bool(failed))


@router.post("/login")
async def login(request: Request) -> Response:
    console = console_of(request)
    form = await form_of(request)
    token = console.sessions.login(first(form, "user"), first(form, "password"))
    if token is None:
        return RedirectResponse("/login?failed=1", status_code=303)
    response = RedirectResponse("/", status_code=303)
    secure = console.secure_cookies if console.secure_cookies is not None else request.url.scheme == "https"
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure,
                        max_age=console.settings.console.session_ttl_s, path="/")
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    console_of(request).sessions.logout(request.cookies.get(COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
