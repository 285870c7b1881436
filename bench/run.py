"""`make bench-cache`: GET /api/v1/users/{id}/ under load, cold and warm, against a ceiling.

Starts its own disposable services (scripts/services.sh, instance "bench"), seeds
BENCH_USERS users each with a token, and serves the app with gunicorn and production
settings (as `make serve`) on loopback. wrk requests Zipf-distributed ids, each as that
user. Phases, one after the other, each BENCH_DURATION long:

* ceiling: a bare WSGI app returning the bytes of a real response (bench/ceiling.py),
  same gunicorn settings;
* cold: Redis flushed and fresh workers (empty local layers), then load;
* warm: every user and token primed into Redis (bench/prime.py), then the same load;
  the local layers fill from the traffic.

Prints requests/s, p50/p95/p99, errors, hit ratio per layer (from the workers'
prometheus counters) and the ratio to the ceiling; then the latency of one request at a
time, in-process, warm and cold (bench/latency.py). Everything it started is stopped.
Environment: BENCH_USERS (100000), BENCH_DURATION (15s), BENCH_CONNECTIONS (32),
BENCH_THREADS (2), BENCH_ZIPF_S (1.1), WEB_CONCURRENCY (2), BENCH_SERVICES_PORT_BASE
(27532), BENCH_PORT (18110; the ceiling uses +1), BENCH_LATENCY_REQUESTS (2000).
"""

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.processes import BIN, ROOT, disposable_services, gunicorn

USERS = int(os.environ.get("BENCH_USERS", "100000"))
DURATION = os.environ.get("BENCH_DURATION", "15s")
CONNECTIONS = os.environ.get("BENCH_CONNECTIONS", "32")
THREADS = os.environ.get("BENCH_THREADS", "2")
ZIPF_S = os.environ.get("BENCH_ZIPF_S", "1.1")
WORKERS = os.environ.get("WEB_CONCURRENCY", "2")
SERVICES_PORT_BASE = os.environ.get("BENCH_SERVICES_PORT_BASE", "27532")
APP_PORT = int(os.environ.get("BENCH_PORT", "18110"))
CEILING_PORT = APP_PORT + 1
LATENCY_REQUESTS = os.environ.get("BENCH_LATENCY_REQUESTS", "2000")


def log(message: str) -> None:
    """Progress on stderr; results go to stdout."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def wrk(port: int, users_file: Path) -> dict[str, float]:
    """One bounded wrk run; the numbers its Lua `done` reports."""
    result = subprocess.run(
        [
            "wrk",
            f"-t{THREADS}",
            f"-c{CONNECTIONS}",
            f"-d{DURATION}",
            "--timeout",
            "5s",
            "-s",
            str(ROOT / "bench" / "zipf.lua"),
            f"http://127.0.0.1:{port}",
        ],
        env={**os.environ, "BENCH_USERS_FILE": str(users_file), "BENCH_ZIPF_S": ZIPF_S},
        check=True,
        capture_output=True,
        text=True,
    )
    match = re.search(r"^RESULT (.*)$", result.stdout, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{result.stdout}\n{result.stderr}")
    numbers = {key: float(value) for key, value in re.findall(r"(\w+)=([\d.]+)", match[1])}
    numbers["rps"] = numbers["requests"] / numbers["seconds"]
    return numbers


def cache_counters(metrics_dir: Path) -> dict[tuple[str, str, str], float]:
    """The workers' cache counters, summed over processes: (name, cache, layer) -> value."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))
    counters: dict[tuple[str, str, str], float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.startswith("userservice_") and sample.name.endswith("_total"):
                key = (sample.name, sample.labels.get("cache", ""), sample.labels.get("layer", ""))
                counters[key] = counters.get(key, 0.0) + sample.value
    return counters


def ratios(before: dict[Any, float], after: dict[Any, float]) -> dict[str, float]:
    """Hit ratios per layer over one phase."""

    def delta(name: str, cache: str, layer: str = "") -> float:
        key = (f"userservice_cache_{name}_total", cache, layer)
        return after.get(key, 0.0) - before.get(key, 0.0)

    def ratio(hit: float, miss: float) -> float:
        return hit / (hit + miss) if hit + miss else 0.0

    local_hits = sum(delta("hits", "user", layer) for layer in ("local", "flight", "request"))
    redis_hits = delta("hits", "user", "redis")
    loads = delta("loads", "user")
    lookups = local_hits + redis_hits + loads
    return {
        "user_local": ratio(local_hits, lookups - local_hits),
        "user_redis": ratio(redis_hits, delta("misses", "user", "redis")),
        "user_any": ratio(local_hits + redis_hits, loads),
        "token_redis": ratio(delta("hits", "token", "redis"), delta("misses", "token", "redis")),
        "redis_errors": after.get(("userservice_redis_errors_total", "", ""), 0.0)
        - before.get(("userservice_redis_errors_total", "", ""), 0.0),
    }


def main() -> None:
    """Run the three phases and print the table."""
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is missing; install it (Debian/Ubuntu: apt-get install -y wrk)")
    work = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    metrics_dir = work / "metrics"
    metrics_dir.mkdir()
    logfile = (work / "gunicorn.log").open("w")
    try:
        services_file = work / "services.env"
        with disposable_services("bench", SERVICES_PORT_BASE, services_file) as services:
            env = {
                **os.environ,
                **services,
                "DJANGO_DEBUG": "false",
                "DJANGO_SECURE_SSL_REDIRECT": "false",
                "DJANGO_SECURE_COOKIES": "false",
                "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
                "WEB_CONCURRENCY": WORKERS,
                # Per-user limit above what one hot Zipf user gets here (default 1000/minute).
                "THROTTLE_USER_RATE": "1000/second",
            }
            python = str(BIN / "python")
            users_file = work / "users.txt"
            for command in (
                ["manage.py", "migrate", "--noinput", "-v0"],
                ["manage.py", "collectstatic", "--noinput", "-v0"],
                ["bench/seed.py", str(USERS), str(users_file)],
            ):
                log(" ".join(command))
                subprocess.run([python, *command], cwd=ROOT, env=env, check=True)
            app_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}

            user_id, token = users_file.read_text().split("\n", 1)[0].split()
            with gunicorn("config.wsgi", APP_PORT, app_env, logfile):
                request = urllib.request.Request(
                    f"http://127.0.0.1:{APP_PORT}/api/v1/users/{user_id}/",
                    headers={"Authorization": f"Bearer {token}"},
                )
                with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
                    body = response.read()
            (work / "body.json").write_bytes(body)

            results: dict[str, dict[str, float]] = {}
            log("phase ceiling")
            ceiling_env = {**env, "BENCH_CEILING_BODY": str(work / "body.json")}
            with gunicorn("bench.ceiling:application", CEILING_PORT, ceiling_env, logfile):
                results["ceiling"] = wrk(CEILING_PORT, users_file)

            flush = ["redis-cli", "-u", services["REDIS_URL"], "flushdb"]
            subprocess.run(flush, check=True, stdout=subprocess.DEVNULL)
            with gunicorn("config.wsgi", APP_PORT, app_env, logfile):
                for phase in ("cold", "warm"):
                    if phase == "warm":
                        log("priming Redis with every user and token")
                        subprocess.run([python, "bench/prime.py"], cwd=ROOT, env=env, check=True)
                    log(f"phase {phase}")
                    before = cache_counters(metrics_dir)
                    results[phase] = wrk(APP_PORT, users_file)
                    results[phase].update(ratios(before, cache_counters(metrics_dir)))
            # One request at a time in a fresh process: latency without queueing.
            latencies = [latency(python, env, users_file, "warm")]
            subprocess.run(flush, check=True, stdout=subprocess.DEVNULL)
            latencies.append(latency(python, env, users_file, "cold"))
            report(results, latencies)
    finally:
        logfile.close()
        shutil.rmtree(work, ignore_errors=True)


def latency(python: str, env: dict[str, str], users_file: Path, label: str) -> str:
    """bench/latency.py's line for LATENCY_REQUESTS sequential in-process requests."""
    log(f"latency {label}")
    result = subprocess.run(
        [python, "bench/latency.py", str(users_file), LATENCY_REQUESTS, label],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip().splitlines()[-1]


def report(results: dict[str, dict[str, float]], latencies: list[str]) -> None:
    """The table, as Markdown (pasted into docs/benchmarks.md)."""
    ceiling = results["ceiling"]["rps"]
    print(
        f"\nGET /api/v1/users/{{id}}/, {USERS} users, Zipf s={ZIPF_S}, wrk -t{THREADS} "
        f"-c{CONNECTIONS} -d{DURATION}, gunicorn {WORKERS} sync workers, {os.cpu_count()} CPUs\n"
    )
    print(
        "| phase | req/s | p50 ms | p95 ms | p99 ms | errors | user hits: local | user hits: Redis "
        "(of local misses) | user hits: any | token hits: Redis | Redis errors | vs ceiling |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for phase, r in results.items():
        cache = (
            f"{r['user_local']:.1%} | {r['user_redis']:.1%} | {r['user_any']:.1%} | "
            f"{r['token_redis']:.1%} | {r['redis_errors']:.0f}"
            if phase != "ceiling"
            else "- | - | - | - | -"
        )
        print(
            f"| {phase} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['errors']:.0f} | {cache} | {r['rps'] / ceiling:.2f} |"
        )
    print(f"\nOne request at a time, in-process ({LATENCY_REQUESTS} requests, fresh process):\n")
    print("| cache | mean ms | p50 ms | p99 ms | SQL queries per request |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for line in latencies:
        fields = dict(re.findall(r"(\w+)=([\w.]+)", line))
        print(
            f"| {fields['label']} | {fields['mean_ms']} | {fields['p50_ms']} | "
            f"{fields['p99_ms']} | {fields['queries_per_request']} |"
        )


if __name__ == "__main__":
    main()
