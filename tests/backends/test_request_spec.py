"""Every request every backend kind can make matches the panel's published API.

Each cell of the vocabulary (command × kind × scope) runs through the real backend code against a
recording in-memory panel (the transport seam: no socket); every request it sends (the call itself and the reads it needs,
``getdomainowner``, ``validate_current_spfs``, and the read-back of its effect,
:mod:`workers.backends.readback`) is checked for path, HTTP method, parameter names,
required parameters and auth scheme against ``published_api.json`` (facts copied from the
panels' documentation, with their sources).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest
from pydantic import SecretStr

from schemas.commands import validate_command
from workers.backends import cpanel, readback, whm
from workers.backends.connections import Answer
from workers.backends.registry import KINDS, read_tables, tables
from workers.backends.transport import Exchange, PanelHttp
from workers.backends.vocabulary import Call
from workers.sandbox.server import Request  # query and form parameters together
from workers.settings import BackendConfig

pytestmark = pytest.mark.unit

SPEC: dict[str, Any] = orjson.loads((Path(__file__).parent / "published_api.json").read_bytes())
LOGIN = {"whm": ("root", "whm-token"), "cpanel": ("shop", "cpanel-token"), "brainycp": ("admin", "brainy-pass")}
MAILBOX, DOMAIN, USER = "info@shop.example", "shop.example", "shop"
DESTINATION = "ops+abuse@elsewhere.example"

#: Arguments of each (command, scope) cell; every modifyacct field is set, so every name is checked.
ARGS: dict[tuple[str, str], dict[str, Any]] = {
    **{(name, "account"): {"user": USER} for name in (
        "suspend_outgoing", "unsuspend_outgoing", "suspend_incoming", "unsuspend_incoming", "suspend_login",
        "unsuspend_login", "hold_outgoing", "release_outgoing", "terminate_sessions")},
    **{(name, "mailbox"): {"email": MAILBOX} for name in (
        "suspend_outgoing", "unsuspend_outgoing", "suspend_incoming", "unsuspend_incoming", "suspend_login",
        "unsuspend_login", "hold_outgoing", "release_outgoing", "delmail")},
    **{(name, "domain"): {"domain": DOMAIN} for name in ("onspf", "offspf", "ondkim", "offdkim")},
    ("set_forward_destination", "account"): {"user": USER, "forward_to": [DESTINATION, "other"]},
    ("addmail", "mailbox"): {"email": MAILBOX, "password": "n3w-Secret-pass", "quota": 10},
    ("passwd", "mailbox"): {"email": MAILBOX, "password": "n3w-Secret-pass"},
    ("addforward", "mailbox"): {"email": MAILBOX, "destination": DESTINATION},
    ("delforward", "mailbox"): {"email": MAILBOX, "destination": DESTINATION},
    ("modifyacct", "account"): {
        "user": USER, "DNS": "new.example", "contactemail": "owner@shop.example", "newuser": "shop2", "owner": "res",
        "BWLIMIT": "unlimited", "HASCGI": 1, "HASDKIM": 1, "HASSHELL": 0, "HASSPF": 1, "LOCALE": "en",
        "MAXFTP": 5, "MAXSQL": 5, "MAXPOP": 5, "MAXLST": 5, "MAXSUB": 5, "MAXPARK": 5, "MAXADDON": 5,
        "MAX_EMAIL_PER_HOUR": 100, "MAX_DEFER_FAIL_PERCENTAGE": 50, "RS": "jupiter", "QUOTA": 1000},
}

CELLS = sorted((kind, command, scope) for kind, table in tables().items() for command, calls in table.items()
               for scope in calls)
#: The cells whose effect is read back, and so whose read calls are checked too.
READ_CELLS = sorted((kind, command, scope) for kind, table in read_tables().items()
                    for command, checks in table.items() for scope, check in checks.items()
                    if isinstance(check, readback.Read))



#: A canned success per kind of path, so a backend goes on to its next request.
ANSWERS: list[tuple[str, dict[str, Any]]] = [
    ("/json-api/getdomainowner", {"metadata": {"result": 1, "reason": "OK"}, "data": {"user": USER}}),
    ("/json-api/uapi_cpanel", {"metadata": {"result": 1, "reason": "OK"}, "data": {"uapi": {"status": 1, "data": None}}}),
    ("/json-api/cpanel", {"cpanelresult": {"data": [{"result": 1, "reason": ""}], "event": {"result": 1}}}),
    ("/json-api/", {"metadata": {"result": 1, "reason": "OK"}}),
    ("/execute/", {"status": 1, "data": None, "errors": None, "messages": None, "warnings": None, "metadata": {}}),
    ("/api/api.php", {"error": 0, "mess": "OK"}),
]


@pytest.fixture(scope="module")
def recorder() -> Iterator[tuple[Exchange, list[Request]]]:
    """An in-memory panel (the transport seam, no socket) that records every request and answers
    each with a canned success."""
    seen: list[Request] = []

    def exchange(method: str, target: str, headers: dict[str, str], body: bytes | None) -> Answer:
        parts = urlsplit(target)
        form = parse_qsl(body.decode(), keep_blank_values=True) if body else []
        params = dict(parse_qsl(parts.query, keep_blank_values=True) + form)
        seen.append(Request(method, parts.path, params, {k.lower(): v for k, v in headers.items()}))
        answer = next(body for prefix, body in ANSWERS if parts.path.startswith(prefix))
        return Answer(200, {"content-type": "application/json"}, orjson.dumps(answer))

    yield exchange, seen


def requests_of(recorder: tuple[Exchange, list[Request]], kind: str, command: str, scope: str, *,
                read: bool = False) -> list[Request]:
    """Run one cell through the real backend of ``kind`` (``read``: its read-back); the requests it sent."""
    exchange, seen = recorder
    username, token = LOGIN[kind]
    config = BackendConfig(name="b1", kind=kind, url="https://b1.example.net:2087", username=username,  # type: ignore[arg-type]
                           token=SecretStr(token))
    backend = KINDS[kind](config, http=PanelHttp(config, exchange))  # type: ignore[call-arg]
    body = {"command": command, "backend": "b1", "args": ARGS[(command, scope)], "producer": "spec-test"}
    parsed = validate_command(body)
    assert parsed.typed_args().scope() == scope
    seen.clear()
    try:
        if read:
            check, args = readback.check_for(read_tables()[kind], parsed, "")
            assert isinstance(check, readback.Read)
            backend.read(check, args)
        else:
            backend.execute(parsed)
    finally:
        backend.close()
    return list(seen)


# -- the checker ------------------------------------------------------------------------------


def problems_of(kind: str, request: Request) -> list[str]:
    """Every way ``request`` departs from the published API of ``kind`` ([] = it matches)."""
    username, token = LOGIN[kind]
    if kind == "brainycp":
        return _brainycp(request, username, token)
    spec = SPEC[kind]
    found = []
    if request.method not in spec["methods"]:
        found.append(f"method {request.method} is not one of {spec['methods']}")
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme != spec["auth_scheme"] or credentials != f"{username}:{token}":
        found.append(f"auth scheme {scheme!r} is not '{spec['auth_scheme']} USER:TOKEN'")
    if not request.path.startswith(spec["path_prefix"]):
        return [*found, f"path {request.path} is not under {spec['path_prefix']}"]
    if kind == "cpanel":
        module, _, function = request.path.removeprefix(spec["path_prefix"]).partition("/")
        return found + _uapi(f"{module}::{function}", request.params)
    return found + _whm(request)


def _whm(request: Request) -> list[str]:
    spec = SPEC["whm"]
    params = dict(request.params)
    function = request.path.removeprefix(spec["path_prefix"])
    if request.path == spec["api2"]["path"]:
        found = _params("json-api/cpanel", {k: params.pop(k) for k in list(params) if k.startswith("cpanel_jsonapi_")},
                        spec["api2"]["params"])
        if request.params.get("cpanel_jsonapi_apiversion") != spec["api2"]["apiversion"]:
            found.append("API 2 calls need cpanel_jsonapi_apiversion=2")
        name = f"{request.params.get('cpanel_jsonapi_module')}::{request.params.get('cpanel_jsonapi_func')}"
        if name not in SPEC["api2"]["functions"]:
            return [*found, f"API 2 function {name} is not published"]
        return found + _params(name, params, SPEC["api2"]["functions"][name])
    found = [] if params.pop("api.version", None) == "1" else [f"{function}: api.version=1 is missing"]
    if function == "uapi_cpanel":
        found += _params("uapi_cpanel", {k: params.pop(k) for k in list(params) if k.startswith("cpanel.")},
                         spec["uapi_cpanel"]["params"])
        return found + _uapi(f"{request.params.get('cpanel.module')}::{request.params.get('cpanel.function')}", params)
    if function not in spec["functions"]:
        return [*found, f"WHM function {function} is not published"]
    return found + _params(function, params, spec["functions"][function], spec["empty_allowed"].get(function, []))


def _uapi(name: str, params: Mapping[str, str]) -> list[str]:
    functions = SPEC["uapi"]["functions"]
    if name not in functions:
        return [f"UAPI function {name} is not published"]
    return _params(name, params, functions[name]["params"])


def _brainycp(request: Request, username: str, token: str) -> list[str]:
    spec = SPEC["brainycp"]
    found = []
    if request.path != spec["path"] or request.method not in spec["methods"]:
        found.append(f"{request.method} {request.path} is not {spec['methods']} {spec['path']}")
    params = dict(request.params)
    # The login: Login/pass when present (addmail's own ``password`` is the mailbox's), else username/password.
    user_field, secret_field = next((pair for pair in reversed(spec["logins"]) if pair[0] in params), spec["logins"][0])
    if (params.pop(user_field, None), params.pop(secret_field, None)) != (username, token):
        found.append(f"the panel login is not in {user_field}/{secret_field}")
    if not params.pop(spec["module"], None):
        found.append(f"the module field {spec['module']} is missing")
    operations = [name for name in spec["operations"] if params.get(name)]
    if len(operations) != 1:
        return [*found, f"exactly one operation field expected, got {operations}"]
    params.pop(operations[0])
    for name in spec["common"]:
        params.pop(name, None)
    return found + _params(operations[0], params, spec["operations"][operations[0]])


def _params(function: str, sent: Mapping[str, str], published: Mapping[str, bool],
            empty_allowed: list[str] | None = None) -> list[str]:
    found = [f"{function}: parameter {name!r} is not published" for name in sorted(set(sent) - set(published))]
    for name, required in sorted(published.items()):
        if required and name not in sent:
            found.append(f"{function}: required parameter {name!r} is missing")
        elif required and sent[name] == "" and name not in (empty_allowed or []):
            found.append(f"{function}: required parameter {name!r} is empty")
    return found


# -- the tests --------------------------------------------------------------------------------


def test_the_arguments_cover_every_cell_of_the_vocabulary() -> None:
    assert {(command, scope) for _kind, command, scope in CELLS} <= set(ARGS)


@pytest.mark.parametrize(("kind", "command", "scope"), CELLS, ids=[f"{k}-{c}-{s}" for k, c, s in CELLS])
def test_every_request_of_every_cell_matches_the_published_api(
    recorder: tuple[Exchange, list[Request]], kind: str, command: str, scope: str,
) -> None:
    # When the real backend runs the cell against a recording panel
    requests = requests_of(recorder, kind, command, scope)
    # Then it sent at least one request, and each matches the published path, method, params and auth
    assert requests
    assert [(r.path, problems_of(kind, r)) for r in requests if problems_of(kind, r)] == []


@pytest.mark.parametrize(("kind", "command", "scope"), READ_CELLS, ids=[f"{k}-{c}-{s}" for k, c, s in READ_CELLS])
def test_every_read_back_request_matches_the_published_api(
    recorder: tuple[Exchange, list[Request]], kind: str, command: str, scope: str,
) -> None:
    # When the real backend reads a cell's effect back from a recording panel
    requests = requests_of(recorder, kind, command, scope, read=True)
    # Then it sent a request, and each matches the published path, method, params and auth
    assert requests
    assert [(r.path, problems_of(kind, r)) for r in requests if problems_of(kind, r)] == []


def test_every_mailbox_read_back_asks_for_the_outgoing_restrictions(recorder: tuple[Exchange, list[Request]]) -> None:
    # list_pops_with_disk returns the outgoing suspension and hold fields only with get_restrictions=1
    for kind in ("cpanel", "whm"):
        requests = requests_of(recorder, kind, "suspend_outgoing", "mailbox", read=True)
        assert [r.params.get("get_restrictions") for r in requests if "list_pops_with_disk" in str(r.params) + r.path] == ["1"]


@pytest.mark.parametrize(("module", "command", "scope", "dropped"), [
    (cpanel, "addforward", "mailbox", "fwdopt"),
    (cpanel, "onspf", "domain", "domain"),
    (whm, "terminate_sessions", "account", "username"),
    (whm, "addmail", "mailbox", "email"),
])
def test_the_checker_fails_a_call_table_that_drops_a_required_parameter(
    recorder: tuple[Exchange, list[Request]], monkeypatch: pytest.MonkeyPatch, module: Any, command: str, scope: str,
    dropped: str,
) -> None:
    # Given a copy of a backend's call table where one call leaves out a required parameter
    original: Call = module.CALLS[command][scope]
    planted = Call(original.via, original.function,
                   lambda a: {k: v for k, v in original.params(a).items() if k != dropped}, original.note)
    table = {name: dict(calls) for name, calls in module.CALLS.items()}
    table[command][scope] = planted
    monkeypatch.setattr(module, "CALLS", table)
    # When that cell's requests are checked
    kind = module.__name__.rpartition(".")[2]
    requests = requests_of(recorder, kind, command, scope)
    problems = [p for r in requests for p in problems_of(kind, r)]
    # Then the checker names the missing parameter
    assert any(f"required parameter {dropped!r} is missing" in p for p in problems), problems


def test_the_checker_fails_a_wrong_auth_scheme_an_unpublished_parameter_and_a_wrong_method() -> None:
    good = Request("POST", "/execute/Email/suspend_login", {"email": MAILBOX},
                   {"authorization": "cpanel shop:cpanel-token"})
    assert problems_of("cpanel", good) == []
    assert problems_of("cpanel", Request("PUT", good.path, good.params, good.headers))
    assert problems_of("cpanel", Request("POST", good.path, good.params, {"authorization": "whm shop:cpanel-token"}))
    assert problems_of("cpanel", Request("POST", good.path, {**good.params, "emial": "x"}, good.headers))
    assert problems_of("cpanel", Request("POST", "/execute/Email/suspend_everything", good.params, good.headers))
