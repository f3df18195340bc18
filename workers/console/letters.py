"""Dead letters: filter, then replay or purge the ticked ones or all matching (count confirmed first)."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from workers.console import actions, queries
from workers.console.auth import COOKIE
from workers.console.web import console_of, first, form_of, refuse, session_of

router = APIRouter()
#: The filter's fields, carried from the list to the confirmation and back.
FILTERS = ("backend", "command", "kind", "older_than_h")


def letter_query(values: dict[str, list[str]]) -> queries.LetterQuery:
    older = first(values, "older_than_h")
    try:
        older_s = float(older) * 3600 if older else None
    except ValueError:
        older_s = None
    return queries.LetterQuery(first(values, "backend"), first(values, "command"), first(values, "kind"), older_s)


@router.get("/dead-letters")
def dead_letters(request: Request, offset: int = 0) -> HTMLResponse:
    console = console_of(request)
    values = {k: [v] for k, v in request.query_params.items()}
    page = queries.letters(console.client, console.dead, letter_query(values), max(0, offset))
    params = {k: first(values, k) for k in FILTERS}
    flash = console.sessions.take_flash(request.cookies.get(COOKIE))
    return console.render("dead_letters.html", session_of(request), page="dead-letters", result=page,
                          params=params, flash=flash)


@router.post("/dead-letters/{action}")
async def act(request: Request, action: str) -> Response:
    """``replay``/``purge`` the ticked ids, or all matching the filter: first a page that states
    the count, then (``confirm`` = that count) the action itself."""
    console, session = console_of(request), session_of(request)
    if action not in ("replay", "purge"):
        return refuse(request, f"unknown action {action}", 404)
    if not session.may_act:
        return refuse(request, f"{session.user} is a viewer: viewers may not {action} dead letters")
    form = await form_of(request)
    if first(form, "scope") == "selected":
        ids = form.get("id", [])
    else:
        ids = queries.matching_ids(console.client, console.dead, letter_query(form))
    if not ids:
        return refuse(request, "nothing selected: tick dead letters, or choose all matching the filter", 400)
    if first(form, "confirm") != str(len(ids)):
        return console.render("confirm.html", session, page="dead-letters", action=action, ids=ids,
                              form={k: v[0] for k, v in form.items() if k not in ("id", "csrf", "confirm")})
    try:
        if action == "replay":
            verdicts = actions.replay(console.client, console.settings, console.dead, session.user, ids)
            done = sum(v == "replayed" for v in verdicts.values())
            others = "".join(f"; {i}: {v}" for i, v in verdicts.items() if v != "replayed")
            flash = f"replayed {done} of {len(ids)}{others[:500]}"
        else:
            flash = f"purged {actions.purge(console.client, console.settings, session.user, ids)} of {len(ids)}"
    except actions.Refused as exc:
        return refuse(request, str(exc))
    console.sessions.flash(request.cookies.get(COOKIE), flash)
    back = {k: first(form, k) for k in FILTERS if first(form, k)}
    return RedirectResponse("/dead-letters?" + urlencode(back), status_code=303)
