"""Write ``hostile_corpus.jsonl``: hostile or malformed commands-stream entries, one per line.

Run once (``python -m tests.security.make_corpus``) and commit the output; the tests read the
file, they never regenerate it. Each line is an object:

``name``      what the entry tries
``encoding``  ``json`` (``body`` is a command object), ``text`` (sent as is), ``b64`` (raw bytes),
              ``no_body`` (the entry has another field instead of ``body``), ``oversize``
``sign``      ``own`` (valid signature by the named producer), ``none``, ``other_key`` (the key
              of another producer), ``garbage``, ``tamper`` (signed, then args changed)
``issued``    ``fresh``, ``stale`` (older than the replay window), ``future``, ``absent``
``expect``    the ``field`` the rejection must name, and its ``rule`` when it is certain

``"id": "AUTO"`` in a body is replaced by a unique id when the corpus is fed.
"""

from __future__ import annotations

import base64
import itertools
from pathlib import Path
from typing import Any

import orjson

OUT = Path(__file__).with_name("hostile_corpus.jsonl")


def cmd(command: str, args: Any, producer: str = "abuse-detector", backend: str = "whm1", **extra: Any) -> dict[str, Any]:
    return {"id": "AUTO", "command": command, "backend": backend, "args": args, "producer": producer, **extra}


def entry(name: str, body: Any, field: str, rule: str | None = None, *, encoding: str = "json",
          sign: str = "own", issued: str = "fresh") -> dict[str, Any]:
    return {"name": name, "encoding": encoding, "body": body, "sign": sign, "issued": issued,
            "expect": {"field": field, "rule": rule}}


def not_json() -> list[dict[str, Any]]:
    texts = ["this is not json", "", "{", "}", "{'single': 'quotes'}", "[1, 2, 3]", "null", "42", '"a string"',
             "true", '{"command": "suspend_outgoing",}', "{\"a\": NaN}", "\x00\x01\x02", "<xml/>",
             "command=suspend_outgoing&user=root", "{\"command\": \"suspend_outgoing\"", "[]", "{}{}",
             "\ufeff{}", "--", "{\"a\":1} trailing"]
    out = []
    for text in texts:
        rule = "object" if text in ("[1, 2, 3]", "null", "42", '"a string"', "true", "[]") else None
        out.append(entry(f"not json: {text[:20]!r}", text, "body", rule, encoding="text"))
    for raw in (b"\xff\xfe\xfd", b"{\"a\": \"\xc3\x28\"}", b"\xed\xa0\x80", b"\x80abc"):
        out.append(entry("invalid utf-8", base64.b64encode(raw).decode(), "body", encoding="b64"))
    out.append(entry("entry without a body field", None, "body", "missing", encoding="no_body"))
    for size in (16 * 1024 + 1, 64 * 1024, 1024 * 1024):
        out.append(entry(f"oversize {size} bytes", size, "body", "max_size", encoding="oversize"))
    return out


def wrong_shapes() -> list[dict[str, Any]]:
    base = cmd("suspend_outgoing", {"user": "example"})
    out = []
    for key in ("command", "args", "producer"):
        body = {k: v for k, v in base.items() if k != key}
        out.append(entry(f"missing {key}", body, key, "missing"))
    bad_values: list[tuple[str, Any, str]] = [
        ("command", 7, "command"), ("command", None, "command"), ("command", ["suspend_outgoing"], "command"),
        ("args", "user=example", "args"), ("args", ["example"], "args"), ("args", None, "args"),
        ("producer", 12, "producer"), ("producer", "", "producer"), ("producer", "abuse detector", "producer"),
        ("producer", "a" * 65, "producer"), ("backend", 1, "backend"), ("backend", "whm1&x=1", "backend"),
        ("backend", "", "backend"), ("priority", "now", "priority"), ("priority", 0, "priority"),
        ("issued_at", "yesterday", "issued_at"), ("issued_at", 1795315211, "issued_at"),
        ("issued_at", "2026-13-45T99:00:00Z", "issued_at"), ("reply_to", "x y", "reply_to"),
        ("reply_to", "", "reply_to"), ("seq", -1, "seq"), ("seq", "one", "seq"), ("reason", "a&b", "reason"),
        ("id", "", "id"), ("id", "-leading-dash", "id"), ("id", "has space", "id"), ("id", "a" * 201, "id"),
        ("id", 42, "id"), ("id", "x&user=root", "id"), ("id", "line\nbreak", "id"), ("batch", "a b", "batch"),
        ("signature", "s" * 300, "signature"), ("signature", 12345, "signature"),
    ]
    for key, value, field in bad_values:
        issued = "keep" if key == "issued_at" else "fresh"
        body = dict(base, **{key: value})
        out.append(entry(f"{key} = {str(value)[:30]!r}", body, field, issued=issued))
    for extra in ("user", "admin", "__proto__", "exec", "Command"):
        out.append(entry(f"unknown top-level field {extra}", dict(base, **{extra: "x"}), extra, "extra_forbidden"))
    for args, field in (({}, "args.user"), ({"user": "example", "email": "info@example.example"}, "args.email"),
                        ({"user": None}, "args.user"), ({"user": 5}, "args.user"), ({"user": ["example"]}, "args.user"),
                        ({"user": {"$ne": ""}}, "args.user"), ({"user": "example", "extra": 1}, "args.extra"),
                        ({"usr": "example"}, "args.usr")):
        out.append(entry(f"args {str(args)[:30]}", dict(base, args=args), field))
    return out


def unknown_commands() -> list[dict[str, Any]]:
    names = ["explode_mailbox", "SUSPEND_OUTGOING", "suspend_outgoing ", "suspend-outgoing", "delete_account",
             "removeacct", "killacct", "exec", "shell", "passwd\n", "addmail;rm -rf /", "../../etc/passwd",
             "suspend_outgoing\x00", "", "Suspend_Outgoing", "createacct", "setresellerips", "api.version",
             "suspendacct", "modifyacct2"]
    return [entry(f"unknown command {n!r}", cmd(n, {"user": "example"}), "command") for n in names]


def injections() -> list[dict[str, Any]]:
    out = []
    users = ["example&user=root", "example%26user%3droot", "example\r\nX-Injected: 1", "example\n", "Example",
             "ex ample", "example;", "example'--", "example\"", "root", "nobody", "cpanel", "ROOT", "example#frag",
             "example?x=1", "example=1", "a" * 17, "1example", "_example", "example\x00", "exa\u200bmple",
             "ex\u202eelpmaxe", "exаmple", "ｅｘａｍｐｌｅ", "../example", "example/..", "$(id)", "`id`",
             "example|id", "%00", "", " ", "example+root", "*", "example,other"]
    for value in users:
        out.append(entry(f"args.user {value!r}", cmd("suspend_outgoing", {"user": value}), "args.user"))
    emails = ["a@b.c%0d%0a", "info@shop.example&email=root@x.example", "info@shop.example\r\nBcc: x@evil.example",
              "info@shop.example\n", "info@@shop.example", "info", "@shop.example", "info@", "info@shop",
              "info@-shop.example", "info@shop-.example", "info@shop..example", ".info@shop.example",
              "info.@shop.example", "in..fo@shop.example", "info+tag@shop.example", "in fo@shop.example",
              "info@shop.example?x=1", "info@shop.example#x", "in%fo@shop.example", "in=fo@shop.example",
              "\"quoted\"@shop.example", "info@[127.0.0.1]", "info@127.0.0.1", "info@xn--pple-43d.example",
              "info@аpple.example", "info@xn--zz.example", "info@ab--cd.example", "инфо@shop.example",
              "info@shop.exam\u200bple", "a" * 65 + "@shop.example", "info@" + "a" * 64 + ".example",
              "info@shop.e", "info@shop.123", "info@shop.example\x00"]
    for value in emails:
        out.append(entry(f"args.email {value[:40]!r}", cmd("suspend_login", {"email": value}), "args.email"))
    domains = ["shop.example&domain=other.example", "shop.example\r\n", "xn--pple-43d.example", "аpple.example",
               "xn--.example", "xn--zz.example", "-shop.example", "shop", "shop.example.", ".shop.example",
               "shop_example.example", "shop.example/..", "shop.example?x", "shop.example#", "sh%6fp.example",
               "a" * 64 + ".example", "ab--cd.example", "xn--mnchen-3ya-.example", "shop..example", "*.example"]
    for value in domains:
        out.append(entry(f"args.domain {value[:40]!r}", cmd("onspf", {"domain": value}, producer="billing"),
                         "args.domain"))
    return out


def mailbox_rules() -> list[dict[str, Any]]:
    out = []
    good = {"email": "new@example.example", "password": "Corpus-pass-1"}
    quotas: list[Any] = ["100", -1, 1_000_000, 1.5, True, "unlimited ", "UNLIMITED", None, [], {"mb": 1}, "1e3"]
    for quota in quotas:
        out.append(entry(f"addmail quota {quota!r}", cmd("addmail", dict(good, quota=quota), producer="migration"),
                         "args.quota"))
    for password, rule in (("", None), ("line\nbreak", "control_characters"), ("nul\x00", "control_characters"),
                           ("bidi\u202e", "control_characters"), ("p" * 1025, None), (12345, None), (None, None)):
        out.append(entry(f"addmail password {str(password)[:20]!r}",
                         cmd("addmail", dict(good, password=password), producer="migration"), "args.password", rule))
    out.append(entry("addmail without password", cmd("addmail", {"email": good["email"]}, producer="migration"),
                     "args.password", "missing"))
    out.append(entry("passwd sealed with another key",
                     cmd("passwd", {"email": "new@example.example", "password": "sealed:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
                         producer="migration"), "args.password", "sealed"))
    for dest in ("|/bin/sh -c id", ":fail: no such user", ":blackhole:", "/dev/null", "info@shop.example,evil@x.example",
                 "evil@x.example\nBcc: y@x.example", "evil@x.example&x=1", "evil@xn--pple-43d.example", "evil"):
        out.append(entry(f"addforward destination {dest[:30]!r}",
                         cmd("addforward", {"email": "info@example.example", "destination": dest}, producer="migration"),
                         "args.destination"))
    for fwd in (["root"], ["nobody"], ["info@shop.example", "cpanel"], ["|/bin/sh"], ["a&b@x.example"]):
        field = "args.forward_to." + str(len(fwd) - 1)
        out.append(entry(f"set_forward_destination {fwd}", cmd("set_forward_destination", {"user": "example", "forward_to": fwd},
                                                               producer="billing"), field))
    modify: list[tuple[dict[str, Any], str]] = [
        ({"MAXPOP": -1}, "args.MAXPOP"), ({"MAXPOP": "lots"}, "args.MAXPOP"), ({"maxpop": 5}, "args.maxpop"),
        ({"owner": "root"}, "args.owner"), ({"newuser": "root"}, "args.newuser"), ({"DNS": "a&b.example"}, "args.DNS"),
        ({"HASSHELL": 2}, "args.HASSHELL"), ({"MAX_DEFER_FAIL_PERCENTAGE": 0}, "args.MAX_DEFER_FAIL_PERCENTAGE"),
        ({"LOCALE": "en\nus"}, "args.LOCALE"), ({"RS": "paper_lantern&x=1"}, "args.RS"), ({}, "args.DNS"),
        ({"contactemail": "a@b.c%0d%0a"}, "args.contactemail"), ({"BWLIMIT": -5}, "args.BWLIMIT"),
    ]
    for change, field in modify:
        out.append(entry(f"modifyacct {change}", cmd("modifyacct", {"user": "example", **change}, producer="billing"), field))
    return out


def signatures() -> list[dict[str, Any]]:
    out = []
    valid = cmd("suspend_outgoing", {"user": "example"})
    cases = [("none", "fresh", "signature", "missing"), ("other_key", "fresh", "signature", "mismatch"),
             ("garbage", "fresh", "signature", "mismatch"), ("tamper", "fresh", "signature", "mismatch"),
             ("own", "stale", "issued_at", "too_old"), ("own", "future", "issued_at", "future"),
             ("own", "absent", "issued_at", "required")]
    for (sign, issued, field, rule), n in itertools.product(cases, range(5)):
        out.append(entry(f"signature {sign}/{issued} #{n}", valid, field, rule, sign=sign, issued=issued))
    for n in range(5):
        out.append(entry(f"signed without id #{n}", {k: v for k, v in valid.items() if k != "id"}, "id", "required"))
        out.append(entry(f"unknown producer #{n}", dict(valid, producer=f"intruder{n}"), "producer", "unknown"))
        out.append(entry(f"claims another producer #{n}", dict(valid, producer="billing"), "signature", "mismatch",
                         sign="other_key"))
    return out


def scopes() -> list[dict[str, Any]]:
    out = []
    abuse_forbidden = ["addmail", "delmail", "passwd", "modifyacct", "addforward", "onspf", "set_forward_destination"]
    args = {"addmail": {"email": "x@example.example", "password": "Scope-pass-1"}, "delmail": {"email": "x@example.example"},
            "passwd": {"email": "x@example.example", "password": "Scope-pass-2"}, "modifyacct": {"user": "example", "owner": "other"},
            "addforward": {"email": "x@example.example", "destination": "y@example.example"}, "onspf": {"domain": "example.example"},
            "set_forward_destination": {"user": "example", "forward_to": []}}
    for name in abuse_forbidden:
        out.append(entry(f"abuse-detector may not {name}", cmd(name, args[name]), "command", "not_allowed"))
    for name in ("delmail", "modifyacct", "suspend_outgoing", "onspf"):
        body = cmd(name, args.get(name, {"user": "example"}), producer="migration")
        out.append(entry(f"migration may not {name}", body, "command", "not_allowed"))
    for producer in ("abuse-detector", "migration", "billing"):
        command = "addmail" if producer == "migration" else "suspend_outgoing"
        a = args["addmail"] if producer == "migration" else {"user": "example"}
        out.append(entry(f"{producer} may not use whm2", cmd(command, a, producer=producer, backend="whm2"),
                         "backend", "not_allowed"))
    for user, producer in itertools.product(("root", "nobody", "cpanel"), ("abuse-detector", "billing")):
        out.append(entry(f"{producer} suspends system account {user}", cmd("suspend_outgoing", {"user": user}, producer=producer),
                         "args.user", "system_account"))
    return out


def main() -> None:
    entries = [*not_json(), *wrong_shapes(), *unknown_commands(), *injections(), *mailbox_rules(), *signatures(), *scopes()]
    OUT.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in entries))
    print(f"{len(entries)} entries -> {OUT}")


if __name__ == "__main__":
    main()
