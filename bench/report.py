"""The printed result: one Markdown table of medians over the rounds, then each round's raw
numbers in compact lines, then memory."""

import math
import os
import statistics
from collections.abc import Mapping, Sequence

Figures = dict[str, float]
# Which ceiling each scenario is compared with: cold reads against one pooled SELECT,
# everything else against the bare WSGI app returning the same bytes.
CEILING_OF = {"cold": "ceiling-select"}


def ratios(rounds: Sequence[Mapping[str, Figures]]) -> None:
    """Add, in place, each scenario's same-round ratios to its ceiling and to the first page."""
    for figures in rounds:
        for name, numbers in figures.items():
            if name.startswith("ceiling"):
                continue
            ceiling = figures.get(CEILING_OF.get(name, "ceiling"))
            if ceiling is not None:
                numbers["vs_ceiling_rps"] = numbers["rps"] / ceiling["rps"]
                numbers["vs_ceiling_p99"] = numbers["p99_ms"] / ceiling["p99_ms"]
        first, deep = figures.get("list-first"), figures.get("list-deep")
        if first is not None and deep is not None:
            deep["vs_first_p50"] = deep["p50_ms"] / first["p50_ms"]
            deep["vs_first_p99"] = deep["p99_ms"] / first["p99_ms"]


def medians(rounds: Sequence[Mapping[str, Figures]]) -> dict[str, Figures]:
    """Per scenario, the median over rounds of each figure (ratios included)."""
    result: dict[str, Figures] = {}
    for name in rounds[0]:
        keys = rounds[0][name].keys()
        result[name] = {
            key: statistics.median(figures[name][key] for figures in rounds) for key in keys
        }
    return result


def _num(value: float | None, pattern: str = "{:.0f}") -> str:
    if value is None or math.isnan(value):
        return "-"
    return pattern.format(value)


def _extra(name: str, r: Figures) -> str:
    if name == "list-deep" and "vs_first_p50" in r:
        return f"p50 {r['vs_first_p50']:.2f}x, p99 {r['vs_first_p99']:.2f}x the first page"
    cpu = f"web CPU {_num(r.get('web_cpu_ms_per_request'), '{:.2f}')} ms/req"
    if "events" in r:
        return (
            f"commit-to-webhook p50/p95/p99 {_num(r['hook_p50_s'], '{:.2f}')}/"
            f"{_num(r['hook_p95_s'], '{:.2f}')}/{_num(r['hook_p99_s'], '{:.2f}')} s, "
            f"{r['events']:.0f} events, {r['undelivered']:.0f} late, "
            f"{_num(r.get('duplicates'))} duplicates, drained "
            f"{_num(r.get('drain_s'), '{:.1f}')} s after the load; {cpu}, worker CPU "
            f"{_num(r.get('worker_cpu_ms_per_event'), '{:.2f}')} ms/event "
            f"({_num(r.get('worker_cpu_ms_per_delivery'), '{:.2f}')} ms/delivery)"
            f"{_budget(r)}"
        )
    return cpu if "web_cpu_ms_per_request" in r else ""


# Every process a write costs CPU in, as bench/run.py names their figures.
_BUDGET = (
    ("web", "web_cpu_ms_per_request"),
    ("worker", "worker_cpu_ms_per_event"),
    ("PostgreSQL primary", "postgresql_primary_cpu_ms_per_request"),
    ("replica", "postgresql_replica_cpu_ms_per_request"),
    ("Redis", "redis_cpu_ms_per_request"),
    ("wrk", "load_cpu_ms_per_request"),
)


def _budget(r: Figures) -> str:
    """CPU per request on every process, their sum, and the rate the cores allow at it."""
    if "load_cpu_ms_per_request" not in r:
        return ""
    parts = {name: r.get(key, math.nan) for name, key in _BUDGET}
    total = sum(value for value in parts.values() if not math.isnan(value))
    cores = os.cpu_count() or 1
    listed = ", ".join(f"{name} {_num(value, '{:.2f}')}" for name, value in parts.items())
    return (
        f"; CPU ms per request by process: {listed}, sum {total:.2f} "
        f"(so at most {1000 * cores / total:.0f} req/s on {cores} cores)"
        if total
        else ""
    )


def table(result: Mapping[str, Figures]) -> None:
    """The medians as a Markdown table."""
    print(
        "| scenario | req/s | p50 ms | p95 ms | p99 ms | errors | user hits: local | "
        "user hits: Redis (of local misses) | token hits: Redis | SQL/req (primary) | "
        "req/s vs ceiling | p99 vs ceiling | notes |"
    )
    print(
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    )
    for name, r in result.items():
        sql = (
            f"{r['sql_per_request']:.2f} ({r['sql_primary_per_request']:.2f})"
            if "sql_per_request" in r
            else "-"
        )
        reference = CEILING_OF.get(name, "ceiling")
        vs_rps = _num(r.get("vs_ceiling_rps"), "{:.2f}")
        vs_p99 = _num(r.get("vs_ceiling_p99"), "{:.2f}")
        print(
            f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['errors']:.0f} | {_num(r.get('user_local'), '{:.1%}')} | "
            f"{_num(r.get('user_redis'), '{:.1%}')} | {_num(r.get('token_redis'), '{:.1%}')} | "
            f"{sql} | {vs_rps}{f' ({reference})' if vs_rps != '-' else ''} | {vs_p99} | "
            f"{_extra(name, r)} |"
        )


def raw(rounds: Sequence[Mapping[str, Figures]]) -> None:
    """Each round's main numbers, one line per scenario."""
    for number, figures in enumerate(rounds, 1):
        for name, r in figures.items():
            line = (
                f"round {number} {name:<14} {r['rps']:7.0f} req/s  p50 {r['p50_ms']:7.2f}  "
                f"p95 {r['p95_ms']:7.2f}  p99 {r['p99_ms']:7.2f} ms  errors {r['errors']:.0f}"
            )
            if r["errors"]:
                kinds = ("non2xx", "connect_errors", "read_errors", "write_errors", "timeouts")
                line += " (" + ", ".join(f"{kind} {r.get(kind, 0):.0f}" for kind in kinds) + ")"
            if "sql_per_request" in r:
                line += (
                    f"  local {_num(r['user_local'], '{:.2f}')}"
                    f"  redis {_num(r['user_redis'], '{:.2f}')}"
                    f"  token {_num(r['token_redis'], '{:.2f}')}"
                    f"  sql/req {r['sql_per_request']:.2f}"
                )
            if "web_cpu_ms_per_request" in r:
                line += f"  web cpu {r['web_cpu_ms_per_request']:.2f} ms/req"
            if "hook_p99_s" in r:
                line += f"  hook p99 {_num(r['hook_p99_s'], '{:.2f}')} s"
                line += f"  worker cpu {_num(r['worker_cpu_ms_per_event'], '{:.2f}')} ms/event"
            print(line)


def targets(result: Mapping[str, Figures], resident: Mapping[str, Sequence[float]]) -> None:
    """The targets, each with the measured median and whether it was met."""
    checks: list[tuple[str, str, float | None, float, bool]] = []

    def check(label: str, scenario: str, key: str, limit: float, *, at_least: bool) -> None:
        value = result.get(scenario, {}).get(key)
        met = value is not None and (value >= limit if at_least else value <= limit)
        checks.append((label, scenario, value, limit, met))

    check("warm req/s vs ceiling, at least", "warm", "vs_ceiling_rps", 0.3, at_least=True)
    check("warm p99 vs ceiling p99, at most", "warm", "vs_ceiling_p99", 3.0, at_least=False)
    check("warm errors, at most", "warm", "errors", 0, at_least=False)
    check(
        "cold req/s vs one-SELECT ceiling, at least", "cold", "vs_ceiling_rps", 0.4, at_least=True
    )
    check(
        "first list page vs ceiling, at least", "list-first", "vs_ceiling_rps", 0.12, at_least=True
    )
    check("deep list p50 vs first page, at most", "list-deep", "vs_first_p50", 1.2, at_least=False)
    check("PATCH req/s, at least", "patch", "rps", 300, at_least=True)
    check("PATCH errors, at most", "patch", "errors", 0, at_least=False)
    check("PATCH commit-to-webhook p99 s, below", "patch", "hook_p99_s", 1.0, at_least=False)
    check("PATCH backlog drained, s, at most", "patch", "drain_s", 5.0, at_least=False)
    check("PATCH undelivered webhooks, at most", "patch", "undelivered", 0, at_least=False)
    check("PATCH duplicate webhooks, at most", "patch", "duplicates", 0, at_least=False)
    check("web CPU ms per PATCH, at most", "patch", "web_cpu_ms_per_request", 4.0, at_least=False)
    check(
        "worker CPU ms per event delivered, at most",
        "patch",
        "worker_cpu_ms_per_event",
        3.0,
        at_least=False,
    )
    print("\nTargets, on the medians:\n")
    for label, scenario, value, limit, met in checks:
        if scenario in result:
            verdict = "not measured" if value is None else "met" if met else "MISSED"
            print(f"  {label} {limit:g}: {_num(value, '{:.2f}')} {verdict}")
    for moment, sizes in resident.items():
        verdict = "met" if sizes and max(sizes) < 150 else "MISSED"
        print(f"  resident MB per web worker {moment}, below 150: {max(sizes):.0f} {verdict}")
    if "signup" in result:
        print(f"  sign-ups/s (Argon2, reported, no target): {result['signup']['rps']:.1f}")
