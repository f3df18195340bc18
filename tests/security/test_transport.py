"""Transport rules: redirects are not followed with credentials; TLS is verified by default, against a
backend's own CA bundle when it has one (real TLS handshakes with a self-signed certificate)."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from tests.conftest import loopback_http
from workers.backends.transport import PanelHttp
from workers.errors import PanelRefused, PanelUnavailable
from workers.settings import BackendConfig


class Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as panels answer
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
    with loopback_http(Recorder) as url:
        yield url


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


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key (a panel's self-signed certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "panel.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "panel.pem", directory / "panel.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server with a self-signed certificate; yields its URL and the certificate file."""
    Recorder.seen = []
    cert, key = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with loopback_http(Recorder, tls=context) as url:
        yield url, cert


def test_tls_is_verified_by_default_so_a_self_signed_panel_is_refused_before_any_request(
        tls_server: tuple[str, Path]) -> None:
    # Given a panel with a self-signed certificate and a backend with default settings
    url, _cert = tls_server
    http = PanelHttp(BackendConfig(name="selfsigned", kind="whm", url=url))
    # When a call is made, then it fails as "cannot connect" (safe to retry) naming the TLS failure
    with pytest.raises(PanelUnavailable, match="cannot connect.*CERTIFICATE_VERIFY_FAILED"):
        http.request("POST", "/json-api/version", headers={"Authorization": "whm root:tok-123456789"})
    http.close()
    # And nothing reached the server
    assert Recorder.seen == []


def test_a_backend_ca_bundle_or_verify_off_reaches_a_self_signed_panel(tls_server: tuple[str, Path]) -> None:
    # Given a panel with a self-signed certificate
    url, cert = tls_server
    for config in (BackendConfig(name="bundle", kind="whm", url=url, ca_bundle=str(cert)),
                   BackendConfig(name="off", kind="whm", url=url, verify_tls=False)):
        http = PanelHttp(config)
        # When a call is made with its CA bundle, or with verification turned off
        answer = http.request("GET", "/status", headers={})
        http.close()
        # Then it gets the panel's answer
        assert answer.status_code == 200, config.name
    assert [path for path, _auth in Recorder.seen] == ["/status", "/status"]


def test_a_ca_bundle_that_is_not_a_certificate_fails_loudly_at_start(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate")
    with pytest.raises(ssl.SSLError):
        PanelHttp(BackendConfig(name="b", kind="whm", url="https://b.example:2087", ca_bundle=str(bundle)))


def test_every_panel_call_runs_with_the_backends_connect_and_read_timeouts(redirecting_server: str) -> None:
    # Given the defaults (both set), and a backend with its own
    default = BackendConfig(name="a", kind="whm", url="https://a.example:2087")
    assert default.verify_tls is True
    assert 0 < default.connect_timeout <= 10 and 0 < default.read_timeout <= 60
    config = BackendConfig(name="b", kind="whm", url=redirecting_server, connect_timeout=2.5, read_timeout=7.5)
    http = PanelHttp(config)
    # When a call is made
    assert http.request("GET", "/status", headers={}).status_code == 200
    # Then its connection was opened with the connect timeout and reads with the read timeout
    (connection,) = http._pool._idle
    assert connection.timeout == 2.5
    assert connection.sock is not None and connection.sock.gettimeout() == 7.5
    http.close()
