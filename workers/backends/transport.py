"""HTTP to panels: one pooled keep-alive connection set per backend
(:mod:`workers.backends.connections`), and the boundary where transport errors and HTTP status
codes become :mod:`workers.errors` exceptions.

Transport rules: TLS verification on unless the backend turns it off (the system's trust store,
or the backend's own CA bundle), redirects never followed (they would carry the credentials
elsewhere), no proxy from the environment, a timeout on every connect and every read, a
deadline for the whole call (``call_deadline``) and a cap on the answer's size (``max_answer_bytes``).
"""

from __future__ import annotations

import contextlib
import http.client
import ssl
from collections.abc import Callable, Iterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

from workers.backends import connections
from workers.backends.connections import Answer, ConnectFailed, ConnectionPool, PoolExhausted
from workers.backends.envelopes import decode_json
from workers.errors import AnswerTooLarge, PanelAuthRejected, PanelRefused, PanelTimeout, PanelUnavailable
from workers.settings_models import BackendConfig

FORM = "application/x-www-form-urlencoded"


@contextlib.contextmanager
def translate_transport_errors(backend: str) -> Iterator[None]:
    """Map transport exceptions to the most specific mailops error, keeping the cause."""
    try:
        yield
    except (ConnectFailed, PoolExhausted) as exc:
        # Nothing reached the panel: safe to retry.
        raise PanelUnavailable(f"{backend}: cannot connect ({exc})") from exc
    except connections.AnswerTooLarge as exc:
        raise AnswerTooLarge(f"{backend}: {exc}") from exc
    except TimeoutError as exc:
        raise PanelTimeout(f"{backend}: no answer in time; the change may have been applied") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise PanelTimeout(
            f"{backend}: connection dropped mid-call ({type(exc).__name__}); the change may have been applied",
        ) from exc


def tls_context(config: BackendConfig) -> ssl.SSLContext | None:
    """The TLS settings of an ``https`` backend; ``None`` for plain HTTP."""
    if not config.url.startswith("https:"):
        return None
    if not config.verify_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    # The backend's own CA (self-signed panel certificates) if given; hostname checks stay on.
    return ssl.create_default_context(cafile=config.ca_bundle)


#: One exchange with a panel: (method, path and query, headers, body) -> its whole answer. The
#: transport seam: a backend's calls go through its pool's, or through one a test passes in
#: (:func:`workers.sandbox.in_memory.exchange_with` answers from a sandbox panel, no socket).
Exchange = Callable[[str, str, dict[str, str], bytes | None], Answer]


class PanelHttp:
    """A pooled keep-alive HTTP client for one backend (or, given an ``exchange``, that instead)."""

    def __init__(self, config: BackendConfig, exchange: Exchange | None = None) -> None:
        self.config = config
        self._pool: ConnectionPool | None = None
        if exchange is None:
            pool = self._pool = ConnectionPool(
                config.url, size=config.max_concurrency, connect_timeout=config.connect_timeout,
                read_timeout=config.read_timeout, ssl_context=tls_context(config), deadline=config.deadline,
                max_answer_bytes=config.max_answer_bytes,
            )
            exchange = lambda method, target, headers, body: pool.request(  # noqa: E731
                method, target, headers=headers, body=body)
        self._exchange = exchange

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> Answer:
        target = f"{path}?{urlencode(params)}" if params else path
        body = None
        sent = dict(headers)
        if data is not None:
            body = urlencode(data).encode()
            sent["Content-Type"] = FORM
        with translate_transport_errors(self.config.name):
            response = self._exchange(method, target, sent, body)
        classify_status(self.config.name, response)
        return response

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()


def classify_status(backend: str, response: Answer) -> None:
    """Raise for HTTP statuses that mean the call did not run."""
    status = response.status_code
    if status in (401, 403):
        raise PanelAuthRejected(f"{backend}: credentials refused (HTTP {status})")
    if status == 429:
        raise PanelUnavailable(f"{backend}: rate limited (HTTP 429)", retry_after=retry_after_seconds(response))
    if status >= 500:
        raise PanelUnavailable(f"{backend}: server error (HTTP {status})", retry_after=retry_after_seconds(response))
    if 300 <= status < 400:
        raise PanelRefused(f"{backend}: unexpected redirect (HTTP {status}); not followed with credentials")
    if status >= 400:
        raise PanelRefused(f"{backend}: request refused (HTTP {status})")


def retry_after_seconds(response: Answer) -> float | None:
    """The Retry-After header in seconds (delta or HTTP date), if present and sane."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import time

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def json_body(backend: str, response: Answer) -> Any:
    """Decode a JSON answer; what a non-JSON one means is ruled in :mod:`workers.backends.envelopes`."""
    return decode_json(backend, response.content)
