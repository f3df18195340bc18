"""The Grafana dashboard and the Prometheus alert rules use only metrics the worker exports, and the rules fire.

The rules are evaluated by ``promtool test rules`` (Debian's ``prometheus`` package; ``.ci/run``
provisions it) against series built from what the worker's metrics endpoint reports for a Redis
in trouble: a breaker open, dead letters growing, an ingest backlog, commands waiting, no worker.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from workers import constants
from workers.metrics import Metrics
from workers.settings import BackendConfig, Settings

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "mailops.json"
#: Sample-name suffixes each metric type adds to its family name.
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
            "gauge": ("",)}


def monitoring_settings(redis_url: str) -> Settings:
    backend = BackendConfig(name="whm1", kind="whm", url="https://whm1.example.net:2087")
    return Settings(redis_url=redis_url, backends={"whm1": backend}, require_signatures=False)


def exported_names(client: redis.Redis, settings: Settings) -> set[str]:
    """Every sample name the worker's registry can export (counters and histograms with their suffixes)."""
    names = set()
    for family in Metrics(client, settings).registry.collect():
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
    return names


def used_names(text: str) -> set[str]:
    return set(re.findall(r"\bmailops_[a-z0-9_]+\b", text))


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    return [target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel["targets"]]


def test_every_metric_the_dashboard_and_the_alerts_use_is_one_the_worker_exports(redis_client: redis.Redis,
                                                                                redis_server: Any) -> None:
    exported = exported_names(redis_client, monitoring_settings(redis_server.url))
    exprs = dashboard_exprs() + [rule["expr"] for rule in alert_rules()]
    used = set().union(*(used_names(expr) for expr in exprs))
    assert used, "no mailops metric found in the dashboard or the alert rules"
    assert used <= exported, f"not exported by the worker: {sorted(used - exported)}"
    # and the four alerts are there
    assert {"MailopsBackendBreakerOpen", "MailopsDeadLettersGrowing", "MailopsIngestLag",
            "MailopsNoLiveWorker"} <= {rule["alert"] for rule in alert_rules()}


def scraped(client: redis.Redis, settings: Settings) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(Metrics(client, settings).registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def series_name(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in (*labels, ("instance", "worker-1:9300")))
    return f"{name}{{{inner}}}"


def annotations(rule: dict[str, Any], labels: dict[str, str], value: float) -> dict[str, str]:
    """The rule's annotations rendered as Prometheus would (the few template forms the rules use)."""
    rendered = {}
    for key, text in rule.get("annotations", {}).items():
        for label, label_value in labels.items():
            text = text.replace(f"{{{{ $labels.{label} }}}}", label_value)
        rendered[key] = text.replace("{{ $value }}", f"{value:g}")
    return rendered


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian package prometheus) is not installed")
def test_the_alert_rules_fire_on_the_metrics_the_worker_reports_for_a_redis_in_trouble(
        redis_client: redis.Redis, redis_server: Any, tmp_path: Path) -> None:
    settings = monitoring_settings(redis_server.url)
    keys = settings.keys
    # Given what a healthy-looking, worker-less deployment reports first (nothing dead-lettered yet)
    before = scraped(redis_client, settings)
    # and then: the breaker of whm1 open, 3 commands dead-lettered, 1500 entries not ingested, 2 waiting
    now_ms = int(time.time() * 1000)
    redis_client.hset(keys.breaker("whm1"), mapping={"state": "open", "until": now_ms + 60_000})
    redis_client.zadd(keys.dead_letters, {f"dead-{i}": now_ms for i in range(3)})
    redis_client.xgroup_create(settings.commands_stream, constants.INGEST_GROUP, id="$", mkstream=True)
    for _ in range(1500):
        redis_client.xadd(settings.commands_stream, {"body": b"{}"})
    redis_client.zadd(keys.waiting("whm1", "backend_down"), {"w-1": now_ms + 600_000, "w-2": now_ms + 600_000})
    after = scraped(redis_client, settings)
    assert after[("mailops_backend_breaker_open", (("backend", "whm1"),))] == 1
    assert after[("mailops_ingest_lag_entries", ())] == 1500
    # When the scraped values are fed to promtool as series: "before" for 10 minutes, then "after"
    rules = {rule["alert"]: rule for rule in alert_rules()}
    wanted = set().union(*(used_names(rule["expr"]) for rule in rules.values()))
    series = [{"series": series_name(name, labels), "values": f"{before.get((name, labels), value):g}x9 {value:g}x30"}
              for (name, labels), value in after.items() if name in wanted]

    def firing(alert: str, value: float, **labels: str) -> dict[str, Any]:
        every = {**labels, **rules[alert].get("labels", {})}
        return {"exp_labels": every, "exp_annotations": annotations(rules[alert], every, value)}

    tests = [{
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [
            # the breaker opened at 10m: not yet after 3 minutes, firing after 5
            {"eval_time": "13m", "alertname": "MailopsBackendBreakerOpen", "exp_alerts": []},
            {"eval_time": "16m", "alertname": "MailopsBackendBreakerOpen",
             "exp_alerts": [firing("MailopsBackendBreakerOpen", 1, backend="whm1")]},
            # 3 more dead letters than 15 minutes before, for 5 minutes (the offset needs 15 minutes of data)
            {"eval_time": "21m", "alertname": "MailopsDeadLettersGrowing",
             "exp_alerts": [firing("MailopsDeadLettersGrowing", 3)]},
            {"eval_time": "16m", "alertname": "MailopsIngestLag", "exp_alerts": [firing("MailopsIngestLag", 1500)]},
            {"eval_time": "26m", "alertname": "MailopsCommandsWaitingLong",
             "exp_alerts": [firing("MailopsCommandsWaitingLong", 2, backend="whm1", reason="backend_down")]},
            # no worker heartbeats in this Redis at all: the worker count reads 0 throughout
            {"eval_time": "5m", "alertname": "MailopsNoLiveWorker", "exp_alerts": [firing("MailopsNoLiveWorker", 0)]},
        ],
    }]
    test_file = tmp_path / "alerts_test.yml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(ALERTS)], "evaluation_interval": "1m", "tests": tests}))
    # Then promtool finds every alert firing when (and only when) expected
    done = subprocess.run(["promtool", "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
