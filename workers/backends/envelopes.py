"""Every panel answer shape, parsed into one outcome.

This is the classification table a reader checks against the panels' API documentation. Each parser returns a :class:`PanelResult` when the
state the command asked for holds (done, or already so) and raises a
:class:`~workers.errors.PanelError` subclass otherwise. HTTP-level failures (401/403, 429, 5xx,
timeouts, refused connections) are classified before this, in :mod:`workers.backends.transport`;
an answer that is not JSON at all is classified by :func:`not_json` (last rows of the table).

=====================  ============================================  ==========================================
shape                  where                                         outcome
=====================  ============================================  ==========================================
WHM API 1              ``metadata.result`` 1 / 0 + ``reason``        done / :data:`WHM_REASONS`
WHM API 0 (legacy)     ``result[0].status`` + ``statusmsg``          done / :data:`WHM_REASONS`
UAPI (flat)            ``status`` 1 / 0 + ``errors[]``               done / :data:`UAPI_REASONS`
UAPI (CLI wrapper)     ``{"apiversion":3, "result": {flat}}``        unwrapped, then as UAPI (flat)
``uapi_cpanel``        WHM metadata, then ``data.uapi`` flat UAPI    both must say 1; inner 0 = failure
API 2                  ``cpanelresult`` ``error`` / ``event.result``  done / :data:`WHM_REASONS`
                       / ``data[].result`` + ``reason``
BrainyCP               ``{"error": N, "mess": ...}``                 :data:`BRAINYCP_CODES`
BrainyCP bad login     ``{"code": 1, "message": "Not perm2"}``       :class:`PanelAuthRejected`
HTML login page        not JSON; HTML with a ``<form`` that is a       :class:`PanelAuthRejected` (``auth``:
                       login form (``login`` in the form, or a         ``failed`` at once, not retried, the
                       password input): what cpsrvd serves, HTTP       breaker not opened)
                       200, when it does not take the credentials
any other non-JSON     a proxy's or maintenance page, a cut body     :class:`PanelUnavailable` (transient)
=====================  ============================================  ==========================================
"""

from __future__ import annotations

import re
from typing import Any, Literal

import orjson

from workers.backends.base import PanelResult
from workers.errors import PanelAuthRejected, PanelError, PanelRefused, PanelUnavailable

Outcome = Literal["already", "transient", "permanent"]

#: (pattern in the panel's reason text, outcome). First match wins; no match = permanent failure.
#: ``already`` means the panel reports the desired state already holds.
WHM_REASONS: tuple[tuple[re.Pattern[str], Outcome], ...] = (
    (re.compile(r"You do not have a user named"), "permanent"),
    (re.compile(r"You do not have access to an account named"), "permanent"),
    (re.compile(r"is not a valid user for this operation"), "permanent"),
    (re.compile(r"Provide the .* parameter|may not be empty|Must at least specify a user"), "permanent"),
    (re.compile(r"Unknown app\s*(\(.+\))?\s*requested|Could not find function"), "permanent"),
    (re.compile(r"already exists|is already", re.IGNORECASE), "already"),
    (re.compile(r"temporarily|try again|timed out|No space left", re.IGNORECASE), "transient"),
)

#: UAPI ``errors[]`` texts (no XID). "No such mailbox" and bad values are permanent.
UAPI_REASONS: tuple[tuple[re.Pattern[str], Outcome], ...] = (
    (re.compile(r"You do not have an email account named"), "permanent"),
    (re.compile(r"Please use a valid email format|Invalid email account"), "permanent"),
    (re.compile(r"could not find the function|Failed to load module|Unknown API requested"), "permanent"),
    (re.compile(r"already exists|is already", re.IGNORECASE), "already"),
    (re.compile(r"temporarily|try again|timed out|No space left", re.IGNORECASE), "transient"),
)

#: BrainyCP ``error`` codes: (operation or ``*``, code) -> outcome. Code 0 is success; codes
#: missing here are permanent. Each row's comment is the panel's text for the code.
BRAINYCP_CODES: dict[tuple[str, int], Outcome] = {
    ("addmail", 1): "already",       # This mailbox already exists: <boxname>
    ("addmail", 3): "transient",     # An error occurred while adding mailbox: <boxname>
    ("onspf", 3): "already",         # SPF is already enabled for domain: <domen>
    ("offspf", 3): "already",        # SPF is already disabled for domain: <domen>
    ("ondkim", 3): "already",        # dkim is already enabled for domain: <domen>
    ("offdkim", 3): "already",       # dkim is already disabled for domain: <domen>
    # onspf/offspf/ondkim/offdkim code 2 "Error enabling ... record for domain" is also what an
    # unknown domain gets: permanent, so a typo is not retried for hours.
    ("*", 1000): "permanent",        # You do not have permission to administer this user
    ("*", 1001): "permanent",        # There is no such user in the ISP-panel
}


#: An HTML form that asks for a login: ``login`` in its opening tag (``id="login_form"``,
#: ``action="/login/"``) or a password input anywhere in the page.
LOGIN_FORM = re.compile(rb"<form\b[^>]*login|<input\b[^>]*type\s*=\s*[\"']?password", re.IGNORECASE)


def not_json(backend: str, content: bytes) -> PanelError:
    """The error for an answer that is not JSON where JSON was expected (see the table above)."""
    snippet = content[:60].decode("utf-8", errors="replace").replace("\n", " ")
    looks_html = re.search(rb"<html|<!doctype html", content[:1024], re.IGNORECASE) is not None
    if looks_html and LOGIN_FORM.search(content):
        return PanelAuthRejected(f"{backend}: the panel answered with its HTML login page: credentials not taken")
    return PanelUnavailable(f"{backend}: expected JSON, got {snippet!r}")


def decode_json(backend: str, content: bytes) -> Any:
    """Decode a JSON answer, or raise what :func:`not_json` says it is."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        raise not_json(backend, content) from None


def classify_reason(backend: str, reason: str, table: tuple[tuple[re.Pattern[str], Outcome], ...]) -> PanelResult:
    """A failure text: already so (a result), transient or permanent (raised)."""
    for pattern, outcome in table:
        if pattern.search(reason):
            if outcome == "already":
                return PanelResult(already=True, message=reason)
            if outcome == "transient":
                raise PanelUnavailable(f"{backend}: {reason}")
            break
    raise PanelRefused(f"{backend}: {reason}")


def whm_api1(backend: str, body: Any) -> PanelResult:
    """WHM API 1: ``{"metadata": {"result": 0|1, "reason": ...}, "data": ...}``.

    A function failure arrives as HTTP 200 with ``result: 0`` and the reason text.
    """
    if not isinstance(body, dict) or not isinstance(body.get("metadata"), dict):
        if isinstance(body, dict) and isinstance(body.get("result"), list):
            return whm_api0(backend, body)
        raise PanelError(f"{backend}: answer has no WHM API 1 metadata")
    meta = body["metadata"]
    reason = str(meta.get("reason") or "")
    if str(meta.get("result")) == "1":
        return PanelResult(message=reason or "OK", data=body.get("data"))
    return classify_reason(backend, reason or "NOT OK", WHM_REASONS)


def whm_api0(backend: str, body: Any) -> PanelResult:
    """Legacy WHM API 0 (no ``api.version``): ``{"result": [{"status": 1, "statusmsg": ...}]}``."""
    items = body.get("result") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items or not isinstance(items[0], dict):
        raise PanelError(f"{backend}: answer has no WHM API 0 result")
    first = items[0]
    message = str(first.get("statusmsg") or "")
    if str(first.get("status")) == "1":
        return PanelResult(message=message or "OK")
    return classify_reason(backend, message or "NOT OK", WHM_REASONS)


def uapi(backend: str, body: Any) -> PanelResult:
    """Flat UAPI ``{"status": 1|0, "data", "errors", "messages", "warnings", "metadata"}``.

    The ``uapi --output=json`` wrapper ``{"apiversion": 3, "result": {...}}`` is unwrapped first.
    """
    if isinstance(body, dict) and "apiversion" in body and isinstance(body.get("result"), dict):
        body = body["result"]
    if not isinstance(body, dict) or "status" not in body:
        raise PanelError(f"{backend}: answer is not a UAPI result")
    errors = [str(e) for e in (body.get("errors") or [])]
    if str(body.get("status")) == "1":
        return PanelResult(message="OK", data=body.get("data"))
    return classify_reason(backend, "; ".join(errors) or "UAPI call failed", UAPI_REASONS)


def uapi_cpanel(backend: str, body: Any) -> PanelResult:
    """UAPI through WHM: the outer WHM metadata says 1 even when ``data.uapi.status`` is 0."""
    whm_api1(backend, body)
    inner = (body.get("data") or {}).get("uapi") if isinstance(body.get("data"), dict) else None
    if not isinstance(inner, dict):
        raise PanelError(f"{backend}: uapi_cpanel answer has no data.uapi")
    return uapi(backend, inner)


def cpanel_api2(backend: str, body: Any) -> PanelResult:
    """cPanel API 2 through ``/json-api/cpanel``: ``{"cpanelresult": {...}}``."""
    result = body.get("cpanelresult") if isinstance(body, dict) else None
    if not isinstance(result, dict):
        raise PanelError(f"{backend}: answer has no cpanelresult")
    if result.get("error"):
        return classify_reason(backend, str(result["error"]), WHM_REASONS)
    event = result.get("event")
    if isinstance(event, dict) and str(event.get("result")) != "1":
        return classify_reason(backend, str(event.get("reason") or "API 2 call failed"), WHM_REASONS)
    data = result.get("data")
    items = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
    for item in items:
        if isinstance(item, dict) and "result" in item and str(item["result"]) != "1":
            return classify_reason(backend, str(item.get("reason") or "API 2 call failed"), WHM_REASONS)
    return PanelResult()


def brainycp(backend: str, operation: str, body: Any) -> PanelResult:
    """BrainyCP ``{"error": N, "mess": ...}``; the bad-login answer is ``{"code": 1, "message": "Not perm2"}``."""
    if not isinstance(body, dict):
        raise PanelError(f"{backend}: BrainyCP answer is not a JSON object")
    if "error" not in body and "code" in body:
        raise PanelAuthRejected(f"{backend}: credentials refused ({body.get('message')!s})")
    try:
        code = int(body["error"])
    except (KeyError, TypeError, ValueError):
        raise PanelError(f"{backend}: BrainyCP answer has no error code") from None
    message = str(body.get("mess") or body.get("message") or "")
    if code == 0:
        return PanelResult(message=message or "OK")
    outcome = BRAINYCP_CODES.get((operation, code)) or BRAINYCP_CODES.get(("*", code)) or "permanent"
    if outcome == "already":
        return PanelResult(already=True, message=message)
    if outcome == "transient":
        raise PanelUnavailable(f"{backend}: {operation} error {code}: {message}")
    raise PanelRefused(f"{backend}: {operation} error {code}: {message}")
