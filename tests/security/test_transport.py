"""Transport rules: redirects are not followed with credentials; TLS verification is on by default."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from workers.backends.transport import PanelHttp
from workers.errors import PanelRefused
from workers.settings import BackendConfig


class Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        Recorder.seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(302 if self.path.startswith("/json-api") else 200)
        self.send_header("Location", "/stolen")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST


@pytest.fixture
def redirecting_server() -> Iterator[str]:
    Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_redirecting_panel_is_refused_and_the_credentials_do_not_follow(redirecting_server: str) -> None:
    # Given a backend whose server answers with a redirect
    config = BackendConfig(name="evil", kind="whm", url=redirecting_server, token=SecretStr("tok-123456789"))
    http = PanelHttp(config)
    # When a call is made with credentials
    with pytest.raises(PanelRefused, match="redirect"):
        http.request("POST", "/json-api/version", headers={"Authorization": "whm root:tok-123456789"})
    http.close()
    # Then only the original request reached the server: nothing went to the redirect target
    assert [path for path, _auth in Recorder.seen] == ["/json-api/version"]


def test_tls_verification_is_on_by_default_and_a_ca_bundle_is_used_when_given(tmp_path) -> None:
    # Given a default backend and one with its own CA bundle
    default = BackendConfig(name="a", kind="whm", url="https://a.example:2087")
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate")
    custom = BackendConfig(name="b", kind="whm", url="https://b.example:2087", ca_bundle=str(bundle))
    # Then verification defaults on, every call has timeouts, and a broken bundle fails loudly at start
    assert default.verify_tls is True
    client = PanelHttp(default)._client
    assert client.timeout.connect == default.connect_timeout and client.timeout.read == default.read_timeout
    assert client.follow_redirects is False
    with pytest.raises(Exception):  # noqa: B017 - ssl raises its own error types for a bad bundle
        PanelHttp(custom)
