"""`make bench`: the service under loopback load, scenario by scenario, against ceilings.

Starts its own disposable services (scripts/services.sh, instance "bench"), seeds
BENCH_USERS users (bench/seed.py), and runs, all on loopback:

* the app: gunicorn with config/gunicorn.py and production settings (as `make serve`);
* the ceilings, on the same gunicorn settings: bench/ceiling.py (a bare WSGI app
  returning the bytes of a real `GET /users/{id}/` response) and bench/ceiling_select.py
  (a bare WSGI app doing one pooled primary-key SELECT on the replica);
* a Celery worker (every queue) and beat, as `make worker` / `make beat`;
* a webhook receiver (bench/receiver.py), subscribed BENCH_SUBSCRIBERS times to
  `user.updated`.

Then BENCH_ROUNDS rounds (3); each round runs every selected scenario once, in the order
below, so the rounds interleave. The app is restarted at the start of each round (fresh
workers, empty local caches). wrk drives bench/load.lua. Scenarios (BENCH_SCENARIOS, a
comma-separated subset; all by default):

  ceiling         bare WSGI, the same bytes as a real response
  ceiling-select  bare WSGI, one pooled primary-key SELECT on the replica
  cold            Redis flushed before the round's app start; GET /users/{id}/, Zipf ids
  warm            the hottest users primed in Redis (bench/prime.py); the same GET load
  list-first      GET /users/ as staff, the first page
  list-deep       GET /users/?cursor=... as staff, the page 1,000 pages deep
  patch           PATCH /users/{id}/ (outbox event, webhook), Zipf ids
  mix             95% GET, 5% PATCH (BENCH_WRITE_SHARE)
  signup          anonymous POST /users/ (an Argon2 hash each), BENCH_SIGNUP_DURATION

Prints the median of each figure over the rounds as a Markdown table, each round's raw
numbers, and the resident size of each web worker after the runs; then the admin's
timings (bench/admin_timings.py) unless BENCH_ADMIN=0. Everything it started is stopped,
also on failure (its logs are then kept and their directory printed).

Environment: BENCH_USERS (1000000), BENCH_TOKEN_USERS (100000: the hot set with tokens),
BENCH_PRIME_USERS (10000: the hottest, primed for warm),
BENCH_DURATION (10s), BENCH_SIGNUP_DURATION (5s), BENCH_PATCH_DURATION (20s: the
event pipeline's targets are for a sustained rate), BENCH_CONNECTIONS (32),
BENCH_SIGNUP_CONNECTIONS (4), BENCH_THREADS (2), BENCH_ZIPF_S (1.1), BENCH_ROUNDS (3),
BENCH_WRITE_SHARE (0.05), BENCH_DRAIN_SECONDS (60), WEB_CONCURRENCY (CPU count + 1),
BENCH_SUBSCRIBERS (1: webhook subscriptions to `user.updated`, each a path of the receiver),
BENCH_SERVICES_PORT_BASE (27532), BENCH_PORT (18110: the app; ceilings +1, +2; the
webhook receiver +3), BENCH_ADMIN (1), BENCH_KEEP_LOGS (0; 1 keeps the logs of a run that
passed too, as one that failed always keeps them).
"""

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import redis

from bench import report
from bench.celery_worker import worker_and_beat
from bench.cpu import children_cpu_seconds, service_pids, session_cpu_seconds, tree_cpu_seconds
from bench.load import wrk
from bench.memory import workers_resident_mb
from bench.metrics import scenario_figures, snapshot
from bench.processes import BIN, ROOT, disposable_services, gunicorn
from bench.receiver import Arrivals, commit_to_webhook, receiver

USERS = int(os.environ.get("BENCH_USERS", "1000000"))
TOKEN_USERS = int(os.environ.get("BENCH_TOKEN_USERS", "100000"))
PRIME_USERS = os.environ.get("BENCH_PRIME_USERS", "10000")
DURATION = os.environ.get("BENCH_DURATION", "10s")
SIGNUP_DURATION = os.environ.get("BENCH_SIGNUP_DURATION", "5s")
PATCH_DURATION = os.environ.get("BENCH_PATCH_DURATION", "20s")
CONNECTIONS = os.environ.get("BENCH_CONNECTIONS", "32")
SIGNUP_CONNECTIONS = os.environ.get("BENCH_SIGNUP_CONNECTIONS", "4")
THREADS = os.environ.get("BENCH_THREADS", "2")
ZIPF_S = os.environ.get("BENCH_ZIPF_S", "1.1")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WRITE_SHARE = os.environ.get("BENCH_WRITE_SHARE", "0.05")
DRAIN_SECONDS = float(os.environ.get("BENCH_DRAIN_SECONDS", "60"))
# As config/gunicorn.py and `make serve` have it: what users run.
WORKERS = os.environ.get("WEB_CONCURRENCY", str((os.cpu_count() or 1) + 1))
SUBSCRIBERS = int(os.environ.get("BENCH_SUBSCRIBERS", "1"))
SERVICES_PORT_BASE = os.environ.get("BENCH_SERVICES_PORT_BASE", "27532")
APP_PORT = int(os.environ.get("BENCH_PORT", "18110"))
CEILING_PORT, SELECT_PORT, RECEIVER_PORT = APP_PORT + 1, APP_PORT + 2, APP_PORT + 3
ADMIN = os.environ.get("BENCH_ADMIN", "1") != "0"
STARTED = time.monotonic()
SCENARIOS = (
    "ceiling",
    "ceiling-select",
    "cold",
    "warm",
    "list-first",
    "list-deep",
    "patch",
    "mix",
    "signup",
)
# Every limit far above what the load reaches: the throttles still read and write their
# history in Redis on each request, but never refuse one.
UNTHROTTLED = {
    f"THROTTLE_{name}_RATE": "1000000/second" for name in ("ANON", "USER", "SIGNUP", "LOGIN_IP")
} | {"LOGIN_FREE_FAILURES_PER_CLIENT": "1000000", "LOGIN_FREE_FAILURES_PER_EMAIL": "1000000"}


def log(message: str) -> None:
    """Progress on stderr, with the time since the start; results go to stdout."""
    elapsed = int(time.monotonic() - STARTED)
    print(f"bench {elapsed // 60}:{elapsed % 60:02}: {message}", file=sys.stderr, flush=True)


def selected_scenarios() -> list[str]:
    """BENCH_SCENARIOS in run order; every scenario by default."""
    wanted = [name.strip() for name in os.environ.get("BENCH_SCENARIOS", "").split(",")]
    wanted = [name for name in wanted if name]
    unknown = set(wanted) - set(SCENARIOS)
    if unknown:
        sys.exit(f"bench: unknown scenarios {sorted(unknown)}; known: {', '.join(SCENARIOS)}")
    return [name for name in SCENARIOS if not wanted or name in wanted]


class Bench:
    """One run: its work directory and environment, the seeded fixture, the webhook arrivals."""

    def __init__(self, work: Path, env: dict[str, str], logfile: IO[str]) -> None:
        self.work = work
        self.env = env
        self.logfile = logfile
        self.metrics_dir = work / "metrics"
        self.metrics_dir.mkdir()
        self.app_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)}
        self.fixture: dict[str, Any] = {}
        self.arrivals = Arrivals()
        # Session ids of the app's gunicorn and of the Celery worker (bench.cpu).
        self.app_session = 0
        self.worker_session = 0

    def python(self, *args: str) -> None:
        """A Django-side helper script, in the services' environment."""
        log(" ".join(args))
        subprocess.run([str(BIN / "python"), *args], cwd=ROOT, env=self.env, check=True)

    def prepare(self) -> None:
        """Migrate, collect static files, seed."""
        self.python("manage.py", "migrate", "--noinput", "-v0")
        self.python("manage.py", "collectstatic", "--noinput", "-v0")
        receiver_url = f"http://127.0.0.1:{RECEIVER_PORT}/hook"
        self.python(
            "bench/seed.py",
            str(USERS),
            str(TOKEN_USERS),
            receiver_url,
            str(self.work),
            str(SUBSCRIBERS),
        )
        self.fixture = json.loads((self.work / "fixture.json").read_text())

    def get(self, port: int, path: str, token: str) -> bytes:
        """One authenticated GET; its body."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
            body: bytes = response.read()
        return body

    def check_app(self) -> None:
        """A real response for the bytes ceiling, and the deep cursor lands where it should."""
        fixture = self.fixture
        user_path = f"/api/v1/users/{fixture['hot_user_id']}/"
        (self.work / "body.json").write_bytes(self.get(APP_PORT, user_path, fixture["hot_token"]))
        page = json.loads(self.get(APP_PORT, fixture["deep_path"], fixture["staff_token"]))
        if page["results"][0]["id"] != fixture["deep_first_id"]:
            raise RuntimeError("the deep cursor does not land where it should")

    def load(self, port: int, name: str) -> dict[str, float]:
        """wrk with the scenario's requests."""
        fixture = self.fixture
        settings = {
            "BENCH_USERS_FILE": str(self.work / "users.txt"),
            "BENCH_STAFF_TOKEN": fixture["staff_token"],
            "BENCH_ZIPF_S": ZIPF_S,
            "BENCH_WRITE_SHARE": WRITE_SHARE,
            "BENCH_MODE": {"list-first": "path", "list-deep": "path"}.get(
                name, name if name in ("patch", "mix", "signup") else "get"
            ),
            "BENCH_PATH": fixture["deep_path"] if name == "list-deep" else fixture["list_path"],
        }
        signup = name == "signup"
        return wrk(
            port,
            settings,
            duration={"signup": SIGNUP_DURATION, "patch": PATCH_DURATION}.get(name, DURATION),
            connections=SIGNUP_CONNECTIONS if signup else CONNECTIONS,
            threads=THREADS,
        )

    def app_scenario(self, name: str) -> dict[str, float]:
        """One scenario against the app, with the workers' counters around it."""
        if name == "warm":
            self.python("bench/prime.py", str(self.work / "users.txt"), PRIME_USERS)
        before = snapshot(self.metrics_dir)
        web_cpu, worker_cpu = self.cpu()
        services_cpu = self.services_cpu()
        load_cpu = children_cpu_seconds()
        started = time.time()
        figures = self.load(APP_PORT, name)
        ended = time.time()
        # wrk is the only child process that ends during the load.
        load_cpu = children_cpu_seconds() - load_cpu
        web_cpu = session_cpu_seconds(self.app_session) - web_cpu
        figures.update(scenario_figures(before, snapshot(self.metrics_dir), figures["requests"]))
        figures["web_cpu_ms_per_request"] = 1000 * web_cpu / max(figures["requests"], 1)
        if name in ("patch", "mix"):
            drain_started = time.monotonic()
            figures.update(
                commit_to_webhook(
                    self.env["DATABASE_URL"],
                    self.arrivals,
                    start=started,
                    end=ended,
                    drain_seconds=DRAIN_SECONDS,
                    subscribers=SUBSCRIBERS,
                )
            )
            # After the last webhook of the scenario arrived: the backlog is drained.
            figures["drain_s"] = time.monotonic() - drain_started
            delivered = figures["events"] - figures["undelivered"]
            worker_cpu = session_cpu_seconds(self.worker_session) - worker_cpu
            figures["worker_cpu_ms_per_event"] = 1000 * worker_cpu / max(delivered, 1)
            figures["worker_cpu_ms_per_delivery"] = figures["worker_cpu_ms_per_event"] / SUBSCRIBERS
            # Where a write's CPU goes, on every process it touches (the load generator's
            # too): what the machine's cores bound the rate to.
            requests = max(figures["requests"], 1)
            for server, seconds in self.services_cpu().items():
                figures[f"{server}_cpu_ms_per_request"] = (
                    1000 * (seconds - services_cpu[server]) / requests
                )
            figures["load_cpu_ms_per_request"] = 1000 * load_cpu / requests
        return figures

    def cpu(self) -> tuple[float, float]:
        """CPU seconds used so far by the app's process group and the worker's."""
        return session_cpu_seconds(self.app_session), session_cpu_seconds(self.worker_session)

    def services_cpu(self) -> dict[str, float]:
        """CPU seconds used so far by the disposable servers, by name (bench.cpu)."""
        return {name: tree_cpu_seconds(pid) for name, pid in service_pids(self.env).items()}

    @contextlib.contextmanager
    def app(self) -> Iterator[int]:
        """The app under gunicorn; yields the master's pid."""
        with gunicorn("config.wsgi", APP_PORT, self.app_env, self.logfile) as master:
            self.app_session = master.pid
            yield master.pid

    def rounds(
        self, scenarios: list[str]
    ) -> tuple[list[dict[str, dict[str, float]]], dict[str, list[float]]]:
        """Every round's figures, and the web workers' resident MB in the last round (before
        the sign-ups, whose Argon2 hashes take 100 MB each, and at the end)."""
        ceiling_env = {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(self.work / "ceiling-metrics")}
        ceiling_env["BENCH_CEILING_BODY"] = str(self.work / "body.json")
        results: list[dict[str, dict[str, float]]] = []
        resident: dict[str, list[float]] = {}
        with contextlib.ExitStack() as ceilings:
            with self.app():
                self.check_app()
            ceilings.enter_context(
                gunicorn("bench.ceiling:application", CEILING_PORT, ceiling_env, self.logfile)
            )
            ceilings.enter_context(
                gunicorn("bench.ceiling_select:application", SELECT_PORT, ceiling_env, self.logfile)
            )
            for number in range(1, ROUNDS + 1):
                figures: dict[str, dict[str, float]] = {}
                if "ceiling" in scenarios:
                    log(f"round {number}: ceiling")
                    figures["ceiling"] = self.load(CEILING_PORT, "ceiling")
                if "ceiling-select" in scenarios:
                    log(f"round {number}: ceiling-select")
                    figures["ceiling-select"] = self.load(SELECT_PORT, "ceiling-select")
                if "cold" in scenarios:
                    redis.Redis.from_url(self.env["REDIS_URL"]).flushdb()
                with self.app() as master:
                    for name in scenarios:
                        if name.startswith("ceiling"):
                            continue
                        if number == ROUNDS and name == "signup":
                            resident["before sign-ups"] = workers_resident_mb(master)
                        log(f"round {number}: {name}")
                        figures[name] = self.app_scenario(name)
                    if number == ROUNDS:
                        resident["after the last round"] = workers_resident_mb(master)
                results.append(figures)
        return results, resident


def main() -> None:
    """Seed, run the rounds, print the tables; stop everything."""
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is missing; install it (Debian/Ubuntu: apt-get install -y wrk)")
    scenarios = selected_scenarios()
    # A SIGTERM (make interrupted, a CI timeout) unwinds like Ctrl-C: every `finally` runs.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    started = time.monotonic()
    ok = False
    with (work / "processes.log").open("w") as logfile:
        try:
            services_file = work / "services.env"
            with disposable_services("bench", SERVICES_PORT_BASE, services_file) as service_env:
                env = {
                    **os.environ,
                    **service_env,
                    **UNTHROTTLED,
                    # Production settings, Argon2 included, whatever the calling shell names.
                    "DJANGO_SETTINGS_MODULE": "config.settings",
                    "DJANGO_DEBUG": "false",
                    "DJANGO_SECURE_SSL_REDIRECT": "false",
                    "DJANGO_SECURE_COOKIES": "false",
                    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
                    # The receiver listens on loopback, which the SSRF guard refuses otherwise.
                    "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
                    "EMAIL_BACKEND": "django.core.mail.backends.dummy.EmailBackend",
                    "CELERY_METRICS_PORT": "0",
                    "WEB_CONCURRENCY": WORKERS,
                }
                bench = Bench(work, env, logfile)
                bench.prepare()
                with (
                    receiver(RECEIVER_PORT) as bench.arrivals,
                    worker_and_beat(env, work, logfile) as bench.worker_session,
                ):
                    results, resident = bench.rounds(scenarios)
                print_results(
                    results,
                    resident,
                    deep_pages=bench.fixture["deep_pages"],
                    load=os.getloadavg(),
                )
                if ADMIN:
                    admin_timings(env)
            ok = True
        finally:
            log(f"{time.monotonic() - started:.0f} s")
            if ok and os.environ.get("BENCH_KEEP_LOGS") != "1":
                shutil.rmtree(work, ignore_errors=True)
            else:
                log(f"logs kept in {work}")


def print_results(
    results: list[dict[str, dict[str, float]]],
    resident: dict[str, list[float]],
    *,
    deep_pages: int,
    load: tuple[float, float, float],
) -> None:
    """The median table, the raw rounds, memory."""
    report.ratios(results)
    print(f"\n{time.strftime('%Y-%m-%d %H:%M %Z')}, {cpu_model()}")
    print(
        f"{USERS} users ({TOKEN_USERS} with tokens), Zipf s={ZIPF_S}, wrk -t{THREADS} "
        f"-c{CONNECTIONS} -d{DURATION} (patch -d{PATCH_DURATION}, signup "
        f"-c{SIGNUP_CONNECTIONS} -d{SIGNUP_DURATION}), "
        f"gunicorn {WORKERS} sync workers, {os.cpu_count()} CPUs, medians of {ROUNDS} "
        f"interleaved rounds; load average at the end {load[0]:.2f} "
        f"{load[1]:.2f} {load[2]:.2f}; the deep list page is {deep_pages} pages in\n"
    )
    result = report.medians(results)
    report.table(result)
    print()
    report.raw(results)
    print("\nResident size per web worker (VmRSS, MB):")
    for moment, sizes in resident.items():
        print(f"  {moment}: {', '.join(f'{size:.0f}' for size in sizes)}")
    report.targets(result, resident)


def cpu_model() -> str:
    """The processor's name, from /proc/cpuinfo."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return "unknown processor"


def admin_timings(env: dict[str, str]) -> None:
    """bench/admin_timings.py, 5 fetches a page, passed through."""
    log("admin timings")
    print("\nAdmin pages (bench/admin_timings.py, 5 fetches a page after 2 warm-ups):\n")
    subprocess.run(
        [str(BIN / "python"), "bench/admin_timings.py"],
        cwd=ROOT,
        env={**env, "BENCH_ROUNDS": "5", "LOG_LEVEL": "WARNING"},
        check=True,
    )


if __name__ == "__main__":
    main()
