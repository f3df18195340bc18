"""Access to the console: configured users only, argon2 hashes, rate-limited logins, viewers read only."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from argon2 import PasswordHasher
from click.testing import CliRunner

from tests.conftest import write_config
from tests.console.conftest import PASSWORDS, with_console
from workers.cli.main import cli
from workers.errors import ConfigError
from workers.sandbox import SandboxServer
from workers.settings import Settings


def logged_in(base: str, user: str) -> tuple[httpx.Client, str]:
    http = httpx.Client(base_url=base, follow_redirects=True)
    page = http.post("/login", data={"user": user, "password": PASSWORDS[user]})
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return http, found.group(1)


def test_a_wrong_password_is_refused_and_repeated_failures_lock_the_name_for_a_minute_even_with_the_right_one(
    redis_client: redis.Redis, whm: SandboxServer, settings_for: Callable[..., Settings],
    console_for: Callable[[Settings], str],
) -> None:
    settings = with_console(settings_for({"whm1": ("whm", whm)}))
    settings = settings.model_copy(update={"console": settings.console.model_copy(update={"max_failed_logins": 3})})
    base = console_for(settings)
    with httpx.Client(base_url=base, follow_redirects=True) as http:
        # A stranger is sent to the login page; a JSON reader is answered 401
        assert http.get("/dead-letters").url.path == "/login"
        assert http.get("/overview.json").status_code == 401
        # A wrong password is refused, and so is an unknown name
        assert http.post("/login", data={"user": "alice", "password": "wrong"}).url.path == "/login"
        assert http.post("/login", data={"user": "mallory", "password": "x"}).url.path == "/login"
        for _ in range(2):
            http.post("/login", data={"user": "alice", "password": "wrong"})
        # After three failures even the right password is refused for that name
        locked = http.post("/login", data={"user": "alice", "password": PASSWORDS["alice"]})
        assert locked.url.path == "/login" and "too many attempts" in locked.text
        assert redis_client.ttl("mailops:console:logins:alice") <= 60
        # Another user is not locked out
        assert "victor (viewer)" in http.post("/login", data={"user": "victor", "password": PASSWORDS["victor"]}).text


def test_a_viewer_reads_every_page_but_may_not_purge_release_or_replay_and_nothing_is_audited(
    redis_client: redis.Redis, whm: SandboxServer, settings_for: Callable[..., Settings],
    console_for: Callable[[Settings], str],
) -> None:
    redis_client.zadd("mailops:dlq", {"dl-1": 1, "dl-2": 2})
    base = console_for(with_console(settings_for({"whm1": ("whm", whm)})))
    http, csrf = logged_in(base, "victor")
    with contextlib.closing(http):
        for path in ("/", "/commands", "/dead-letters", "/holds", "/batches", "/backends"):
            assert http.get(path).status_code == 200, path
        for path, data in (("/dead-letters/purge", {"scope": "selected", "id": "dl-1", "confirm": "1"}),
                           ("/dead-letters/replay", {"scope": "matching", "confirm": "2"}),
                           ("/holds/release", {"backend": "whm1", "target": "example", "aspect": "outgoing",
                                               "reason": "abuse", "why": "x"})):
            refused = http.post(path, data={"csrf": csrf, **data})
            assert refused.status_code == 403 and "viewer" in refused.text, path
    assert redis_client.zcard("mailops:dlq") == 2
    assert redis_client.xlen("mailops:audit") == 0


def test_purging_all_matching_asks_for_the_count_first_and_is_audited_with_the_console_user(
    redis_client: redis.Redis, whm: SandboxServer, settings_for: Callable[..., Settings],
    console_for: Callable[[Settings], str],
) -> None:
    # Given three dead letters (records as finish.lua keeps them), two older than an hour
    for cid, age_h in (("old-1", 3), ("old-2", 2), ("new-1", 0)):
        redis_client.hset(f"mailops:cmd:{cid}", mapping={
            "status": "dead_lettered", "attempts": 1,
            "command": orjson.dumps({"id": cid, "command": "suspend_outgoing", "backend": "whm1",
                                     "args": {"user": "example"}}),
            "outcome": orjson.dumps({"id": cid, "status": "dead_lettered",
                                     "error": {"kind": "panel_unavailable", "message": "x"}})})
        redis_client.zadd("mailops:dlq", {cid: int((time.time() - age_h * 3600) * 1000)})
    base = console_for(with_console(settings_for({"whm1": ("whm", whm)})))
    http, csrf = logged_in(base, "alice")
    with contextlib.closing(http):
        # When the operator purges all older than an hour: the count is stated, nothing purged yet
        form = {"csrf": csrf, "scope": "matching", "older_than_h": "1"}
        asked = http.post("/dead-letters/purge", data=form)
        assert "purge <b>2</b> dead letter(s)" in asked.text
        assert redis_client.zcard("mailops:dlq") == 3
        # A stale count (the set changed since) is asked again, not purged
        assert "purge <b>2</b>" in http.post("/dead-letters/purge", data={**form, "confirm": "5"}).text
        done = http.post("/dead-letters/purge", data={**form, "confirm": "2"})
    # Then exactly those two are gone, each purge audited with alice's name
    assert "purged 2 of 2" in done.text
    assert [m.decode() for m in redis_client.zrange("mailops:dlq", 0, -1)] == ["new-1"]
    audit = [f[b"body"] for _, f in redis_client.xrange("mailops:audit")]
    assert len(audit) == 2 and all(b'"operator":"alice"' in a and b'"dlq.purge"' in a for a in audit)


def test_console_users_come_from_the_config_with_their_hash_from_a_file_and_a_plain_password_is_refused_by_key(
    tmp_path: Path, whm: SandboxServer,
) -> None:
    hashed = CliRunner().invoke(cli, ["console", "hash-password", "--password", "s3cret-pass"])
    assert hashed.exit_code == 0 and PasswordHasher().verify(hashed.output.strip(), "s3cret-pass")
    (tmp_path / "alice.hash").write_text(hashed.output)
    config = write_config(tmp_path / "mailops.toml", {"whm1": {"kind": "whm", "url": whm.url, "token_env": "T"}})
    base = config.read_text()
    config.write_text(base + '[console.users.alice]\nrole = "operator"\npassword_hash_file = "alice.hash"\n')
    settings = Settings.from_env({"MAILOPS_CONFIG": str(config), "T": "token"})
    assert settings.console.users["alice"].role == "operator"
    assert "s3cret-pass" not in repr(settings.console)
    config.write_text(base + '[console.users.bob]\nrole = "viewer"\npassword_hash = "hunter2"\n')
    with pytest.raises(ConfigError, match=r"table \[console.users.bob\], key 'password_hash': not an argon2 hash"):
        Settings.from_env({"MAILOPS_CONFIG": str(config), "T": "token"})
    config.write_text(base + '[console.users.bob]\nrole = "admin"\npassword_hash_file = "../alice.hash"\n')
    (tmp_path.parent / "alice.hash").write_text(hashed.output)
    with pytest.raises(ConfigError, match=r"console.users.bob"):
        Settings.from_env({"MAILOPS_CONFIG": str(config), "T": "token"})


def test_console_serve_refuses_to_start_without_users_rather_than_offer_anonymous_access(
    tmp_path: Path, whm: SandboxServer, redis_client: redis.Redis,
) -> None:
    config = write_config(tmp_path / "mailops.toml", {"whm1": {"kind": "whm", "url": whm.url, "token_env": "T"}})
    url = redis_client.connection_pool.connection_kwargs
    done = CliRunner().invoke(cli, ["console", "serve", "--port", "0"], env={
        "MAILOPS_CONFIG": str(config), "T": "token", "MAILOPS_REDIS_URL": f"redis://{url['host']}:{url['port']}/0"})
    assert done.exit_code == 4 and "no [console.users.NAME] is configured" in done.output


def test_the_session_cookie_is_secure_when_the_login_came_over_https_through_a_proxy_and_never_readable_by_scripts(
    redis_client: redis.Redis, whm: SandboxServer, settings_for: Callable[..., Settings],
    console_for: Callable[..., str],
) -> None:
    base = console_for(with_console(settings_for({"whm1": ("whm", whm)})), secure_cookies=None)
    login = {"user": "victor", "password": PASSWORDS["victor"]}
    with httpx.Client(base_url=base) as http:
        plain = http.post("/login", data=login).headers["set-cookie"]
        proxied = http.post("/login", data=login, headers={"X-Forwarded-Proto": "https"}).headers["set-cookie"]
    assert "HttpOnly" in plain and "SameSite=strict" in plain and "Secure" not in plain
    assert "HttpOnly" in proxied and "SameSite=strict" in proxied and "Secure" in proxied
