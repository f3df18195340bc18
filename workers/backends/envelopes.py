"""Every panel answer shape, parsed into one outcome.

This is the classification table a reader checks against the panel documentation
(``shared/reference/panel-apis.md``). Each parser returns a :class:`PanelResult` when the
state the command asked for holds (done, or already so) and raises a
:class:`~workers.errors.PanelError` subclass otherwise.
"""

from __future__ import annotations

import re
from typing import Any

from workers.backends.base import PanelResult
from workers.errors import PanelError, PanelRefused, PanelUnavailable

#: (pattern in the panel's reason text, outcome). First match wins; no match = permanent failure.
#: ``already`` means the panel reports the desired state already holds.
WHM_REASONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"You do not have a user named"), "permanent"),
    (re.compile(r"You do not have access to an account named"), "permanent"),
    (re.compile(r"is not a valid user for this operation"), "permanent"),
    (re.compile(r"Provide the .* parameter|may not be empty|Must at least specify a user"), "permanent"),
    (re.compile(r"Unknown app\s*(\(.+\))?\s*requested"), "permanent"),
    (re.compile(r"already exists|is already", re.IGNORECASE), "already"),
    (re.compile(r"temporarily|try again|timed out|No space left", re.IGNORECASE), "transient"),
)


def _classify_reason(backend: str, reason: str, table: tuple[tuple[re.Pattern[str], str], ...]) -> PanelResult:
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
        raise PanelError(f"{backend}: answer has no WHM API 1 metadata")
    meta = body["metadata"]
    reason = str(meta.get("reason") or "")
    if str(meta.get("result")) == "1":
        return PanelResult(message=reason or "OK", details={"data": body.get("data")} if body.get("data") else {})
    return _classify_reason(backend, reason or "NOT OK", WHM_REASONS)
