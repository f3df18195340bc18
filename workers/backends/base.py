"""The small Protocol every panel backend implements, and what a successful call returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from schemas.commands import Command

if TYPE_CHECKING:
    from workers.backends.readback import Read, ReadTable
    from workers.settings_models import BackendConfig


@dataclass(frozen=True)
class PanelResult:
    """A call that reached the state the command asked for.

    ``already`` is true when the panel said the state was already so (no change was made).
    Failures are raised as :class:`~workers.errors.PanelError` subclasses instead.
    ``details`` is what mailops understood and publishes (bounded, see
    :class:`schemas.events.Event`); ``data`` is the panel's own answer data, for a backend's
    reads (the owner of a domain...), and is never published or stored.
    """

    already: bool = False
    message: str = "OK"
    details: dict[str, Any] = field(default_factory=dict)
    data: Any = field(default=None, repr=False, compare=False)
    #: The state was read back from the panel and is what the command asked (``False``: it could
    #: not be read, ``details.not_verified`` says why; ``None``: no panel call, nothing to read).
    verified: bool | None = None


class Backend(Protocol):
    """One configured panel server."""

    #: The configured backend name (``whm1``).
    name: str
    #: The panel kind (``whm``, ``cpanel``, ``brainycp``).
    kind: str
    #: What the configured ``username`` is on this kind; ``None`` when the kind has a default login.
    username_means: str | None
    #: Its configuration (read-back on or off, the grace window, the SPF record...).
    config: BackendConfig
    #: How each command's effect is read back on this kind (:mod:`workers.backends.readback`).
    reads: ReadTable
    #: Why a cell missing from :attr:`reads` cannot be read back.
    not_readable: str

    def supports(self, command: str) -> bool:
        """Whether this backend kind can run the command at all."""
        ...

    def execute(self, command: Command) -> PanelResult:
        """Run the command; raise a ``PanelError`` subclass when it did not happen."""
        ...

    def read(self, read: Read, args: Any) -> dict[str, Any]:
        """Read the state ``read`` covers for the target in ``args`` (see :mod:`workers.backends.readback`)."""
        ...

    def check(self) -> PanelResult:
        """Check credentials and reachability with a harmless read-only call."""
        ...

    def close(self) -> None:
        """Release pooled connections."""
        ...
