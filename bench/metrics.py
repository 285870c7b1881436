"""What the web workers counted during a scenario: cache hits per layer, SQL queries.

Read from the workers' prometheus multiprocess files (PROMETHEUS_MULTIPROC_DIR), the same
figures /metrics serves, summed over every worker process, dead ones included (gunicorn's
max_requests recycles workers during a run). A scenario's figures are the difference
between a snapshot before it and one after it.
"""

from pathlib import Path

Counters = dict[tuple[str, str, str], float]


def snapshot(metrics_dir: Path) -> Counters:
    """Every counter of interest, summed over processes: (name, label a, label b) -> value.

    Cache counters are keyed by (name, cache, layer), SQL counters by (name, alias, "").
    """
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))
    counters: Counters = {}
    for family in registry.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            if sample.name.startswith("userservice_"):
                key = (sample.name, sample.labels.get("cache", ""), sample.labels.get("layer", ""))
            elif sample.name == "django_db_execute_total":
                key = (sample.name, sample.labels.get("alias", ""), "")
            else:
                continue
            counters[key] = counters.get(key, 0.0) + sample.value
    return counters


def scenario_figures(before: Counters, after: Counters, requests: float) -> dict[str, float]:
    """Hit ratios per layer and SQL queries per request over one scenario.

    user_local: user-cache lookups answered in-process (local layer, a fill in flight in
    the same process, or already read in the same request); user_redis: the share of the
    rest Redis answered; token_redis: token-cache lookups Redis answered (the token cache
    has no local layer). sql_per_request counts every statement on every alias;
    sql_primary_per_request those on the primary alone.
    """

    def delta(name: str, a: str, b: str = "") -> float:
        return after.get((name, a, b), 0.0) - before.get((name, a, b), 0.0)

    def cache(kind: str, cache_name: str, layer: str = "") -> float:
        return delta(f"userservice_cache_{kind}_total", cache_name, layer)

    def ratio(hit: float, miss: float) -> float:
        return hit / (hit + miss) if hit + miss else float("nan")

    local_hits = sum(cache("hits", "user", layer) for layer in ("local", "flight", "request"))
    redis_hits = cache("hits", "user", "redis")
    loads = cache("loads", "user")
    aliases = {key[1] for key in after if key[0] == "django_db_execute_total"}
    queries = {alias: delta("django_db_execute_total", alias) for alias in aliases}
    per_request = 1 / requests if requests else 0.0
    return {
        "user_local": ratio(local_hits, redis_hits + loads),
        "user_redis": ratio(redis_hits, cache("misses", "user", "redis")),
        "token_redis": ratio(cache("hits", "token", "redis"), cache("misses", "token", "redis")),
        "redis_errors": delta("userservice_redis_errors_total", "", ""),
        "sql_per_request": sum(queries.values()) * per_request,
        "sql_primary_per_request": queries.get("default", 0.0) * per_request,
    }
