"""Config mistakes are caught before anything starts: ``config check`` and ``worker`` both exit 4 naming the key."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import WHM_TOKEN
from workers.cli.exit_codes import RET_CONFIG, RET_OK
from workers.cli.main import cli
from workers.sandbox import SandboxServer
from workers.store.embedded_redis import EmbeddedRedis

ROOT = Path(__file__).resolve().parents[2]
SEALING_KEY = base64.b64encode(os.urandom(64)).decode()

GOOD = """\
[mailops]
sealing_key_env = "SEALING"

[backends.whm1]
kind = "whm"
url = "https://whm1.example.net:2087"
token_env = "TOKEN_WHM1"

[backends.cp1]
kind = "cpanel"
url = "https://cp1.example.net:2083"
username = "shop"
token_env = "TOKEN_WHM1"

[producers.billing]
key_env = "KEY_BILLING"
commands = ["addmail", "passwd"]
backends = ["whm1"]

[operators.alice]
key_env = "KEY_ALICE"
actions = ["holds.release"]
reasons = ["abuse"]
"""
ENV = {"TOKEN_WHM1": WHM_TOKEN, "KEY_BILLING": "billing-key", "KEY_ALICE": "alice-key", "SEALING": SEALING_KEY}


def check(tmp_path: Path, text: str, **env: str) -> tuple[int, str, str]:
    path = tmp_path / "mailops.toml"
    path.write_text(text)
    result = CliRunner().invoke(cli, ["config", "check", "--skip-redis"],
                                env={**ENV, **env, "MAILOPS_CONFIG": str(path)}, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_a_good_file_lists_producers_operators_backends_and_the_sealing_key_state_but_no_secret(tmp_path: Path) -> None:
    code, out, err = check(tmp_path, GOOD)
    assert code == RET_OK, err
    assert "producer billing" in out and "commands addmail, passwd; backends whm1" in out
    assert "operator alice" in out and "actions holds.release; reasons abuse" in out
    assert "backend cp1" in out and "user shop" in out
    assert "backend whm1" in out and "user root" in out  # only WHM has a default login
    assert "sealing key" in out and "present" in out
    for secret in (SEALING_KEY, "billing-key", "alice-key", WHM_TOKEN):
        assert secret not in out + err


MISTAKES = {
    "a typo'd producers table": (GOOD.replace("[producers.billing]", "[producer.billing]"),
                                 "unknown table 'producer'; did you mean 'producers'?"),
    "a typo'd backends table": (GOOD.replace("[backends.whm1]", "[backend.whm1]"),
                                "unknown table 'backend'; did you mean 'backends'?"),
    "a typo'd mailops table": (GOOD.replace("[mailops]", "[mailop]"),
                               "unknown table 'mailop'; did you mean 'mailops'?"),
    "an unknown key in a backend": (GOOD.replace('kind = "whm"', 'kind = "whm"\nread_timout = 3'),
                                    "table [backends.whm1], key 'read_timout': unknown key 'read_timout'; "
                                    "did you mean 'read_timeout'?"),
    "an unknown key in a producer": (GOOD.replace('commands = ["addmail"', 'comands = ["addmail"'),
                                     "table [producers.billing], key 'comands': unknown key 'comands'; "
                                     "did you mean 'commands'?"),
    "an unknown key in an operator": (GOOD.replace("actions =", "action ="),
                                      "table [operators.alice], key 'action': unknown key 'action'; "
                                      "did you mean 'actions'?"),
    "an unknown key in mailops": (GOOD.replace("[mailops]\n", "[mailops]\nrequire_signature = false\n"),
                                  "table [mailops], key 'require_signature': unknown key 'require_signature'; "
                                  "did you mean 'require_signatures'?"),
    "a URL without a scheme": (GOOD.replace('"https://whm1.example.net:2087"', '"whm1.example.net:2087"'),
                               "table [backends.whm1], key 'url'"),
    "a URL without a host": (GOOD.replace('"https://whm1.example.net:2087"', '"https://:2087"'),
                             "table [backends.whm1], key 'url'"),
    "a plain http URL": (GOOD.replace('"https://whm1.example.net:2087"', '"http://whm1.example.net:2087"'),
                         "allow_insecure_http = true"),
    "an unknown panel kind": (GOOD.replace('kind = "cpanel"', 'kind = "cpanle"'),
                              "table [backends.cp1], key 'kind': unknown panel kind 'cpanle'; did you mean 'cpanel'?"),
    "a cPanel backend without username": (GOOD.replace('username = "shop"\n', ""),
                                          "table [backends.cp1]: username: required for a cpanel backend"),
    "a BrainyCP backend without username": (GOOD + '[backends.brainy1]\nkind = "brainycp"\n'
                                                   'url = "https://panel.example.org:8002"\ntoken_env = "TOKEN_WHM1"\n',
                                            "table [backends.brainy1]: username: required for a brainycp backend"),
    "a command allow-list naming no command": (GOOD.replace('"passwd"]', '"paswd"]'),
                                               "key 'commands': 'paswd' names no command; did you mean 'passwd'?"),
    "a backend allow-list naming no backend": (GOOD.replace('backends = ["whm1"]', 'backends = ["whm2"]'),
                                               "key 'backends': 'whm2' names no configured backend; "
                                               "did you mean 'whm1'?"),
}


@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_config_check_refuses_each_mistake_with_exit_four_and_the_place_named(tmp_path: Path, mistake: str) -> None:
    text, expected = MISTAKES[mistake]
    code, out, err = check(tmp_path, text)
    assert code == RET_CONFIG, out
    assert expected in err and str(tmp_path / "mailops.toml") in err
    assert "Traceback" not in err and "configuration ok" not in out


@pytest.mark.parametrize(("env", "expected"), [
    ({"TOKEN_WHM1": ""}, "key 'token_env': environment variable TOKEN_WHM1 is empty"),
    ({"KEY_BILLING": "  "}, "table [producers.billing], key 'key_env': environment variable KEY_BILLING is empty"),
    ({"SEALING": "not base64 at all!"}, "key 'sealing_key_env': the sealing key is not valid base64"),
    ({"SEALING": base64.b64encode(b"k" * 32).decode()}, "key 'sealing_key_env': the sealing key must be 64 bytes"),
])
def test_empty_secrets_and_bad_sealing_keys_are_refused_naming_the_key(tmp_path: Path, env: dict[str, str],
                                                                       expected: str) -> None:
    code, _out, err = check(tmp_path, GOOD, **env)
    assert code == RET_CONFIG
    assert expected in err


def test_an_empty_token_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("\n")
    code, _out, err = check(tmp_path, GOOD.replace('token_env = "TOKEN_WHM1"', 'token_file = "token"', 1))
    assert code == RET_CONFIG
    assert "table [backends.whm1], key 'token_file'" in err and "is empty" in err


def test_a_bad_sealing_key_in_the_environment_is_refused_by_name(tmp_path: Path) -> None:
    code, _out, err = check(tmp_path, GOOD.replace('sealing_key_env = "SEALING"', ""), MAILOPS_SEALING_KEY="abc")
    assert code == RET_CONFIG
    assert "MAILOPS_SEALING_KEY: the sealing key" in err


def run_worker(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "workers", "worker", "-p", "1", "-t", "1"], cwd=ROOT, text=True,
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("mistake", ["a typo'd producers table", "a URL without a scheme", "a plain http URL"])
def test_the_worker_refuses_to_start_on_the_same_mistakes_with_exit_four_and_no_traceback(
        tmp_path: Path, redis_server: EmbeddedRedis, mistake: str) -> None:
    text, expected = MISTAKES[mistake]
    path = tmp_path / "mailops.toml"
    path.write_text(text)
    proc = run_worker({**ENV, "MAILOPS_CONFIG": str(path), "MAILOPS_REDIS_URL": redis_server.url})
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == RET_CONFIG, err
    assert expected in err and "Traceback" not in err


def test_the_worker_refuses_a_bad_sealing_key_with_exit_four(tmp_path: Path, redis_server: EmbeddedRedis) -> None:
    path = tmp_path / "mailops.toml"
    path.write_text(GOOD)
    proc = run_worker({**ENV, "SEALING": "too-short", "MAILOPS_CONFIG": str(path),
                       "MAILOPS_REDIS_URL": redis_server.url})
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == RET_CONFIG, err
    assert "key 'sealing_key_env'" in err and "Traceback" not in err


def test_a_worker_calling_a_backend_over_plain_http_logs_a_warning_naming_it(
        tmp_path: Path, redis_server: EmbeddedRedis, whm: SandboxServer) -> None:
    # Given a backend on plain http:// that the file explicitly allows
    path = tmp_path / "mailops.toml"
    path.write_text(GOOD.replace('"https://whm1.example.net:2087"', f'"{whm.url}"\nallow_insecure_http = true'))
    proc = run_worker({**ENV, "MAILOPS_CONFIG": str(path), "MAILOPS_REDIS_URL": redis_server.url})
    # When the worker starts, it says so at WARNING, naming the backend
    assert proc.stderr is not None
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if "threads on" in line:
                break
        proc.terminate()
        _out, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # never leave a worker behind to take later tests' commands
            proc.kill()
            _out, rest = proc.communicate()
            lines.append(rest)
            raise AssertionError(f"the worker did not stop within 60 s of SIGTERM: {''.join(lines)[-4000:]}")
    assert proc.returncode == 0, rest
    assert any("WARNING" in line and "backend whm1" in line and "http://" in line for line in lines), lines
