"""HTTP to panels: one pooled httpx client per backend, and the boundary where httpx errors
and HTTP status codes become :mod:`workers.errors` exceptions.

Transport rules: TLS verification on unless the backend turns it off, an optional CA bundle
per backend, redirects never followed (they would carry the credentials elsewhere), and a
timeout on every call.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from workers.errors import PanelAuthRejected, PanelRefused, PanelTimeout, PanelUnavailable
from workers.settings import BackendConfig


@contextlib.contextmanager
def translate_transport_errors(backend: str) -> Iterator[None]:
    """Map httpx exceptions to the most specific mailops error, keeping the cause."""
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        # Nothing reached the panel: safe to retry.
        raise PanelUnavailable(f"{backend}: cannot connect ({type(exc).__name__})") from exc
    except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:
        raise PanelTimeout(f"{backend}: no answer in time; the change may have been applied") from exc
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        raise PanelTimeout(f"{backend}: connection dropped mid-call; the change may have been applied") from exc
    except httpx.TooManyRedirects as exc:  # pragma: no cover - redirects are never followed
        raise PanelRefused(f"{backend}: redirected") from exc
    except httpx.HTTPError as exc:
        raise PanelUnavailable(f"{backend}: HTTP error ({type(exc).__name__})") from exc


class PanelHttp:
    """A pooled keep-alive HTTP client for one backend."""

    def __init__(self, config: BackendConfig, *, transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        verify: ssl.SSLContext | bool = config.verify_tls
        if config.verify_tls and config.ca_bundle:
            # The backend's own CA (self-signed panel certificates); hostname checks stay on.
            verify = ssl.create_default_context(cafile=config.ca_bundle)
        self._client = httpx.Client(
            base_url=config.url.rstrip("/"),
            verify=verify,
            follow_redirects=False,
            timeout=httpx.Timeout(config.read_timeout, connect=config.connect_timeout),
            limits=httpx.Limits(max_connections=config.max_concurrency, max_keepalive_connections=config.max_concurrency),
            transport=transport,
            trust_env=False,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        with translate_transport_errors(self.config.name):
            response = self._client.request(method, path, headers=headers, params=params, data=data)
        classify_status(self.config.name, response)
        return response

    def close(self) -> None:
        self._client.close()


def classify_status(backend: str, response: httpx.Response) -> None:
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


def retry_after_seconds(response: httpx.Response) -> float | None:
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


def json_body(backend: str, response: httpx.Response) -> Any:
    """Decode a JSON answer; an HTML page where JSON was expected is a transient failure."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        snippet = response.text[:60].replace("\n", " ")
        raise PanelUnavailable(f"{backend}: expected JSON, got {snippet!r}") from None
