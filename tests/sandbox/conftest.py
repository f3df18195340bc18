"""Sandboxes of each kind on real loopback HTTP, and an httpx client per test."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from workers.sandbox import SandboxServer
from workers.sandbox.brainycp import BrainycpSandbox
from workers.sandbox.cpanel import CpanelSandbox
from workers.sandbox.whm import WhmSandbox

WHM_AUTH = {"Authorization": "whm root:sandbox-whm-token"}
CPANEL_AUTH = {"Authorization": "cpanel shop:sandbox-cpanel-token"}
BRAINY_LOGIN = {"username": "admin", "password": "sandbox-brainy-pass"}


@pytest.fixture
def whm_server() -> Iterator[SandboxServer]:
    """WHM with account ``example`` (domain example.example) and its mailbox info@example.example."""
    app = WhmSandbox(token="sandbox-whm-token")
    app.add_account("example")
    app.state.add_mailbox("info@example.example")
    with SandboxServer(app) as server:
        yield server


@pytest.fixture
def cpanel_server() -> Iterator[SandboxServer]:
    """cPanel with account ``shop`` (domain shop.example) and its mailbox info@shop.example."""
    app = CpanelSandbox()
    app.add_account("shop", "shop.example", token="sandbox-cpanel-token")
    app.state.add_mailbox("info@shop.example")
    with SandboxServer(app) as server:
        yield server


@pytest.fixture
def brainy_server() -> Iterator[SandboxServer]:
    """BrainyCP with administrator ``admin``, host user ``host`` (domain host.example, password host-pass)."""
    app = BrainycpSandbox(password="sandbox-brainy-pass")
    app.add_account("host", "host.example", password="host-pass")
    with SandboxServer(app) as server:
        yield server


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        yield client
