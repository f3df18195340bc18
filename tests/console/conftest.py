"""Console fixtures: the console under uvicorn on a free port, users, and one headless Chromium per module."""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import uvicorn
from pydantic import SecretStr

from workers.console.app import create_app
from workers.console.auth import hash_password
from workers.settings import ConsoleConfig, ConsoleUser, OperatorConfig, Settings

#: Console users of every test: an operator and a viewer (hashed once per session: argon2 is slow on purpose).
PASSWORDS = {"alice": "alice-password-7Q2", "victor": "victor-password-9K4"}
OPERATOR_KEY = "alice-operator-key-0123456789abcdef"
#: Where the browser tests save each page: docs/console/ (the README links them) when
#: MAILOPS_SCREENSHOTS=1 (`MAILOPS_SCREENSHOTS=1 .venv/bin/pytest tests/console/test_browser.py`), else a
#: scratch folder, so an ordinary test run leaves the committed pictures alone.
SCREENSHOTS = (Path(__file__).resolve().parents[2] / "docs" / "console" if os.environ.get("MAILOPS_SCREENSHOTS") == "1"
               else Path(tempfile.gettempdir()) / "mailops-console-screenshots")
_hashes: dict[str, str] = {}


def with_console(settings: Settings) -> Settings:
    """``settings`` plus console users alice (operator, acting as operator alice) and victor (viewer)."""
    if not _hashes:
        _hashes.update({name: hash_password(password) for name, password in PASSWORDS.items()})
    users = {"alice": ConsoleUser(name="alice", role="operator", password_hash=SecretStr(_hashes["alice"])),
             "victor": ConsoleUser(name="victor", role="viewer", password_hash=SecretStr(_hashes["victor"]))}
    operator = OperatorConfig(name="alice", key=SecretStr(OPERATOR_KEY), actions=("dlq.replay", "holds.release"),
                              reasons=("abuse",))
    return settings.model_copy(update={"console": ConsoleConfig(users=users, secure_cookies=False),
                                       "operators": {**settings.operators, "alice": operator}})


@pytest.fixture
def console_for() -> Iterator[Callable[..., str]]:
    """Serve the console of ``settings`` under uvicorn in a thread; returns its base URL."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(settings: Settings, secure_cookies: bool | None = False) -> str:
        client = redis.Redis.from_url(str(settings.redis_url))
        app = create_app(settings, client, secure_cookies=secure_cookies)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "the console did not start"
            time.sleep(0.01)
        servers.append((server, thread))
        port = server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=5)


def chromium_paths() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """One headless Debian Chromium for the module, driven by Selenium through chromium-driver."""
    paths = chromium_paths()
    if paths is None:
        pytest.skip("chromium and chromium-driver are not installed (Debian: apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    os.environ.setdefault("SE_AVOID_STATS", "true")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=paths[1]))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def log_in(driver: object, base: str, user: str) -> None:
    """Log in through the login form, as a person would."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    d: Any = driver
    d.delete_all_cookies()
    d.get(f"{base}/login")
    d.find_element(By.ID, "login-user").send_keys(user)
    d.find_element(By.ID, "login-password").send_keys(PASSWORDS[user])
    d.find_element(By.ID, "login-submit").click()
    # (the click returns before the next page is there: wait for it)
    signed_in = WebDriverWait(d, 10).until(lambda page: page.find_element(By.ID, "user"))
    assert signed_in.text.startswith(user)


def screenshot(driver: object, name: str) -> None:
    """The whole page (up to 2,400 px tall) as NAME.png in :data:`SCREENSHOTS`."""
    d: Any = driver
    size = d.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = d.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 2400), "scale": 1}})
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} never held within {timeout} s"
        time.sleep(0.05)
