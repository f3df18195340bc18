"""The one exception tree of mailops.

Every error the package raises descends from :class:`MailopsError`; third-party errors
(the panel connection's, redis, pydantic) are translated at one boundary each and keep their cause::

    MailopsError
    ├── ConfigError                  the settings or the backends file are wrong
    ├── CommandError                 a command cannot be run as given
    │   ├── CommandRejected          it fails validation (names the field and the rule)
    │   ├── UnknownBackend           it names, or routes to, no configured backend
    │   └── Superseded               terminal `superseded`: a newer command for its target+aspect was applied
    ├── PanelError                   a panel call did not do what was asked
    │   ├── NotApplied               the panel answered OK, but reading it back shows no change
    │   ├── PanelRefused             permanent: the panel said no (bad user, bad value)
    │   │   ├── PanelAuthRejected    the credentials were refused (401/403, "Not perm2")
    │   │   └── UnsupportedCommand   this backend kind cannot do this command
    │   └── PanelUnavailable         transient: retry later (5xx, 429, timeout, refused)
    │       ├── PanelTimeout         the call may or may not have been applied
    │       └── AnswerTooLarge       the answer passed the backend's max_answer_bytes

Control-flow signals are not errors and live with the middleware that raises them, except
:class:`Defer` ("run this again later without counting an attempt"), which backends, limits and
ordering gates all raise and :class:`~workers.queue.middleware.lifecycle.Lifecycle` handles.
"""

from __future__ import annotations

from typing import Any


class MailopsError(Exception):
    """Root of every mailops exception."""

    #: Machine-readable kind used in the ``error.kind`` field of events.
    kind = "internal"


class ConfigError(MailopsError):
    """The settings or the backends file are invalid."""

    kind = "config"


class CommandError(MailopsError):
    """A command cannot be run as given."""

    kind = "invalid"


class CommandRejected(CommandError):
    """A command failed validation; ``field`` and ``rule`` say where and why."""

    kind = "rejected"

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.rule = rule
        self.message = message


class UnknownBackend(CommandError):
    """The command names, or routes to, no configured backend (field ``backend``, rule ``unknown``)."""

    kind = "unknown_backend"
    field = "backend"
    rule = "unknown"


class PanelError(MailopsError):
    """A panel call did not do what was asked."""

    kind = "panel"


class NotApplied(PanelError):
    """The panel answered OK, but the state read back within the grace window is not what was
    asked (:mod:`workers.attempt.verification`). Retried like a transient failure, without feeding the
    breaker (the panel answered); ``read`` is the state seen, published in ``details.read``."""

    kind = "not_applied"

    def __init__(self, message: str, *, read: dict[str, Any]) -> None:
        super().__init__(message)
        self.read = read


class PanelRefused(PanelError):
    """Permanent failure: retrying the same call cannot succeed."""

    kind = "panel_refused"


class PanelAuthRejected(PanelRefused):
    """The panel refused the backend's credentials."""

    kind = "auth"


class UnsupportedCommand(PanelRefused):
    """The backend kind has no way to run this command."""

    kind = "unsupported"


class PanelUnavailable(PanelError):
    """Transient failure: the same call may succeed later.

    ``retry_after`` carries the panel's own hint in seconds, when it gave one.
    """

    kind = "panel_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PanelTimeout(PanelUnavailable):
    """The call timed out after it was sent: it may have been applied."""

    kind = "timeout"


class AnswerTooLarge(PanelUnavailable):
    """The panel's answer passed the backend's ``max_answer_bytes``: reading stopped there. The
    call may have been applied (retried like a timeout: commands are desired-state)."""

    kind = "answer_too_large"


class Defer(MailopsError):
    """Signal, not a failure: run the command again in ``delay_ms`` without counting this attempt.

    Lifecycle re-enqueues it with the next generation and publishes a ``waiting`` event with
    ``reason``. Used for an open circuit breaker (``backend_down``), a full rate cap
    (``backend_busy``), a full concurrency cap (``cap_full``: the command is *parked* for
    ``parked_on``, not delayed, and a give-back on that backend releases it) and, by the ordering
    gate, a busy target.
    """

    kind = "deferred"

    def __init__(self, delay_ms: int, reason: str, message: str = "", *, parked_on: str | None = None) -> None:
        super().__init__(message or f"deferred {delay_ms} ms: {reason}")
        self.delay_ms = max(0, int(delay_ms))
        self.reason = reason
        #: The backend whose give-back releases the command (instead of a delay).
        self.parked_on = parked_on


class Repeat(MailopsError):
    """Signal, not a failure: while this command was queued, command ``original`` of the same
    producer asked the same state of this target+aspect (and hold reason), and its call set it.

    The command ends ``succeeded`` with ``already: true`` and ``details.repeat_of``, never reaching
    the panel (an abuse detector re-sending the same suspension on every scan costs no call).
    """

    kind = "repeat"

    def __init__(self, original: str, message: str) -> None:
        super().__init__(message)
        self.original = original


class Superseded(CommandError):
    """A newer command for the same target and aspect (and hold reason) was already applied.

    Terminal (status ``superseded``): the command never reaches the panel.
    """

    kind = "superseded"


class TargetBusy(Defer):
    """Another command for the same target and aspect is in flight: run again shortly.

    Not a failure; as a :class:`Defer` it does not count an attempt.
    """

    kind = "target_busy"

    def __init__(self, delay_ms: int, message: str = "") -> None:
        super().__init__(delay_ms, "target_busy", message)
