"""The targets of issue 8, the machine, and the figures as a table and as JSON."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MIB = 1024 * 1024


@dataclass(frozen=True)
class Target:
    name: str
    #: Human text of the target, e.g. ``>= 1.0x``.
    goal: str
    value: Callable[[dict[str, Any]], float]
    check: Callable[[float], bool]
    unit: str = ""


def _max_rss_mib(f: dict[str, Any]) -> float:
    return max((b for pool in f["peak_rss_bytes"].values() for b in pool), default=0) / MIB


TARGETS = (
    Target("throughput vs plain Dramatiq", ">= 1.0x", lambda f: f["throughput"]["ratio"], lambda v: v >= 1.0, "x"),
    Target("  the same, floor on mailops' client", ">= 1.0x", lambda f: f["throughput"]["ratio_vs_pool_floor"],
           lambda v: v >= 1.0, "x"),
    Target("latency p50 at 50 % load", "<= 5 ms", lambda f: f["latency"]["p50_ms"], lambda v: v <= 5, " ms"),
    Target("latency p99 at 50 % load", "<= 25 ms", lambda f: f["latency"]["p99_ms"], lambda v: v <= 25, " ms"),
    Target("urgent p99 with bulk queued", "<= 100 ms", lambda f: f["urgent_under_bulk"]["p99_ms"],
           lambda v: v <= 100, " ms"),
    Target("backend utilisation of caps", ">= 95 %", lambda f: f["utilisation"]["share"] * 100,
           lambda v: v >= 95, " %"),
    Target("  the same vs a direct client", ">= 95 %", lambda f: f["utilisation"]["share_of_ceiling"] * 100,
           lambda v: v >= 95, " %"),
    Target("backends over their cap", "0", lambda f: len(f["utilisation"]["backends_over_cap"]),
           lambda v: v == 0),
    Target("Redis memory per queued command", "<= 1024 B", lambda f: f["memory"]["bytes_per_command"],
           lambda v: v <= 1024, " B"),
    Target("  the same with 36-char UUID ids", "<= 1024 B", lambda f: f["memory"]["bytes_per_command_uuid_ids"],
           lambda v: v <= 1024, " B"),
    Target("peak RSS per worker process", "<= 150 MiB", _max_rss_mib, lambda v: v <= 150, " MiB"),
    Target("2 processes vs 1 (backend-bound)", ">= 1.7x", lambda f: f["scaling"]["ratio"], lambda v: v >= 1.7, "x"),
    Target("fast batch behind a slow migration", "<= 1.2x alone", lambda f: f["fairness"]["slowdown"],
           lambda v: v <= 1.2, "x"),
    Target("  slow backend's share of its cap", ">= 95 %", lambda f: f["fairness"]["slow_share_of_cap"] * 100,
           lambda v: v >= 95, " %"),
    Target("  slow backend over its cap", "0", lambda f: int(f["fairness"]["slow_cap_violations"]), lambda v: v == 0),
    Target("fleet: fast backends' throughput kept", ">= 90 %", lambda f: f["fleet"]["fast_throughput_kept"] * 100,
           lambda v: v >= 90, " %"),
    Target("fleet: urgent p99 during the migration", "<= 100 ms", lambda f: f["fleet"]["migrating"]["urgent"]["p99_ms"],
           lambda v: v <= 100, " ms"),
    Target("  migrating backend over its cap", "0", lambda f: int(f["fleet"]["slow_cap_violations"]), lambda v: v == 0),
    Target("healthy p99 beside a trickling panel", "<= 2.0x alone", lambda f: f["trickle"]["p99_ratio"],
           lambda v: v <= 2.0, "x"),
    Target("  trickling panel's longest call", "<= 5.5 s", lambda f: f["trickle"]["slow_longest_call_s"],
           lambda v: v <= 5.5, " s"),
    Target("  trickling backend over its cap", "0", lambda f: int(f["trickle"]["slow_cap_violations"]), lambda v: v == 0),
)


def machine() -> dict[str, Any]:
    """nproc, CPU model, RAM and load average of this machine."""
    info: dict[str, Any] = {"nproc": os.cpu_count(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpu:
            info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in cpu if ln.startswith("model name")), "?")
        with open("/proc/meminfo", encoding="utf-8") as mem:
            info["ram_mib"] = int(next(ln for ln in mem if ln.startswith("MemTotal")).split()[1]) // 1024
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    except (OSError, StopIteration):
        pass
    return info


def verdicts(figures: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for target in TARGETS:
        try:
            value = float(target.value(figures))
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            value = float("nan")
        rows.append({"name": target.name, "value": round(value, 3), "unit": target.unit.strip(),
                     "target": target.goal, "pass": bool(value == value and target.check(value))})
    return rows


def render_readback(rb: dict[str, Any]) -> str:
    """The read-back phase in one line: throughput and latency with read-back off and on."""
    off, on = rb["off"], rb["on"]
    return (f"read-back ({rb['commands']} commands queued, {rb['processes']} process x {rb['threads']} threads; "
            f"then paced at {off['rate_cps']}/s): off {off['throughput_cps']}/s, p50 {off['p50_ms']} ms, "
            f"p99 {off['p99_ms']} ms; on {on['throughput_cps']}/s, p50 {on['p50_ms']} ms, p99 {on['p99_ms']} ms; "
            f"throughput on/off {rb['throughput_ratio']}; statuses off {off['statuses']}, on {on['statuses']}")


def render(figures: dict[str, Any]) -> str:
    """The figures as plain text: the targets table, then the detail of each run."""
    lines = []
    m = figures.get("machine", {})
    lines.append(f"machine: {m.get('nproc')} CPU ({m.get('cpu', '?')}), {m.get('ram_mib', '?')} MiB RAM, "
                 f"load average at end {m.get('loadavg', '?')}")
    tp, lat, urg = figures["throughput"], figures["latency"], figures["urgent_under_bulk"]
    util, sc, mem = figures["utilisation"], figures["scaling"], figures["memory"]
    lines.append(f"throughput ({tp['commands']} commands, {tp['processes']} process x {tp['threads']} threads): "
                 f"mailops {tp['mailops_cps']}/s, plain Dramatiq {tp['baseline_cps']}/s, ratio {tp['ratio']} "
                 f"(median of {len(tp['rounds'])} rounds: ratios {[r['ratio'] for r in tp['rounds']]})")
    if "pool_floor_cps" in tp:
        lines.append(f"  the same floor on mailops' HTTP client (http.client pool instead of httpx): "
                     f"{tp['pool_floor_cps']}/s, mailops/that {tp['ratio_vs_pool_floor']} "
                     f"(rounds {[r['ratio_vs_pool_floor'] for r in tp['rounds']]})")
    lines.append(f"redis: {tp['redis_cpu_us_per_command']} us of Redis CPU per command -> one Redis core carries "
                 f"about {tp['redis_bound_cps']} commands/s for the whole fleet; "
                 f"{tp.get('redis_calls_per_command')} Redis commands per command, "
                 f"{tp.get('script_calls_per_command')} of them script calls")
    lines.append(f"latency at {lat['load_fraction']:.0%} load ({lat['rate_cps']}/s of {lat.get('max_rate_cps')}/s "
                 f"measured just before, {lat['count']} commands): "
                 f"p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms; "
                 f"not counted, the first {lat['warmup']['seconds']:g} s after the workers started "
                 f"({lat['warmup']['count']} commands): p50 {lat['warmup']['p50_ms']} ms, p99 {lat['warmup']['p99_ms']} ms")
    lines.append(f"urgent with {urg['bulk']} bulk (ingested in {urg['bulk_ingest_s']} s; "
                 f"{urg['bulk_waiting_at_start']} -> {urg['bulk_waiting_at_end']} still waiting): "
                 f"p50 {urg['p50_ms']} ms, p95 {urg['p95_ms']} ms, p99 {urg['p99_ms']} ms over {urg['count']}")
    lines.append(f"utilisation ({util['backend_latency_s'] * 1000:g} ms backend, caps {util['caps']}, "
                 f"{util['processes']} processes x {util['threads']} threads): {util['achieved_cps']}/s of "
                 f"{util['allowed_cps']}/s allowed = {util['share']:.1%}; a direct client at the caps gets "
                 f"{util['ceiling_cps']}/s, so {util['share_of_ceiling']:.1%} of that; "
                 f"max in flight {util['max_in_flight']}")
    lines.append(f"scaling ({sc['backend_latency_s'] * 1000:g} ms backend, {sc['threads']} threads): "
                 f"1 process {sc['one_process_cps']}/s, 2 processes {sc['two_process_cps']}/s, ratio {sc['ratio']} "
                 f"(backend-bound ceiling {sc['backend_bound_cps']})")
    if "fairness" in figures:
        fair = figures["fairness"]
        lines.append(f"fairness ({fair['commands_per_batch']} bulk per backend; slow {fair['slow_backend']}, fast "
                     f"{fair['fast_backend']}; 1 process x 8 threads): fast batch alone {fair['fast_alone_s']} s, "
                     f"queued behind the slow one {fair['fast_behind_slow_s']} s ({fair['slowdown']}x); slow "
                     f"backend at {fair['slow_share_of_cap']:.1%} of its cap, max in flight {fair['slow_max_in_flight']}")
    if "trickle" in figures:
        tr = figures["trickle"]
        lines.append(f"trickle (healthy backend {tr['healthy_latency_s'] * 1000:g} ms, paced {tr['rate_cps']:g}/s; "
                     f"{tr['slow_commands']} commands for a panel answering a byte a second, cap {tr['slow_cap']}, "
                     f"deadline {tr['slow_deadline_s']:g} s): healthy p50/p99 alone {tr['alone']['p50_ms']} / "
                     f"{tr['alone']['p99_ms']} ms, beside it {tr['beside']['p50_ms']} / {tr['beside']['p99_ms']} ms "
                     f"({tr['p99_ratio']}x); {tr['slow_calls']} trickling calls, longest {tr['slow_longest_call_s']} s, "
                     f"max in flight {tr['slow_max_in_flight']}")
    if "readback" in figures:
        lines.append(render_readback(figures["readback"]))
    lines.append(f"memory: {mem['bytes_per_command']} B per queued command over {mem['commands']} "
                 f"(by key: {mem['bytes_per_command_by_key']}); with 36-char UUID ids "
                 f"{mem['bytes_per_command_uuid_ids']} B")
    rss = {name: [round(b / MIB, 1) for b in pool] for name, pool in figures["peak_rss_bytes"].items()}
    outcomes = {run: figures[run]["statuses"] for run in ("throughput", "utilisation") if "statuses" in figures[run]}
    lines.append(f"terminal statuses (all should be succeeded): {outcomes}")
    lines.append(f"peak RSS per worker process (MiB) by run: {rss}")
    lines.append("")
    lines.append(f"{'target':<36} {'measured':>14} {'goal':>12}  verdict")
    for row in figures["targets"]:
        value = f"{row['value']:g}{(' ' + row['unit']) if row['unit'] and row['unit'] != 'x' else row['unit']}"
        lines.append(f"{row['name']:<36} {value:>14} {row['target']:>12}  {'PASS' if row['pass'] else 'MISS'}")
    return "\n".join(lines)
