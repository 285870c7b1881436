"""`make chaos` / `make chaos-short`: faults under load, then a check that nothing was lost.

Loopback only, bounded in time. Starts its own disposable services (scripts/services.sh,
instance "chaos": primary, streaming replica, the cache's Redis) and the Celery broker:
with CHAOS_BROKER=rabbitmq the script's RabbitMQ node, else a Redis of its own; gunicorn
with production settings, one Celery worker, one beat and a local webhook receiver
subscribed to every topic. A fixed mix of sign-ups, reads and updates runs throughout
(chaos/load.py) while the faults of chaos/faults.py are injected one after the other,
each held for a while, undone, and followed by a wait until /readyz says everything is
back. Then, with the load stopped, it waits (bounded) for the outbox and every handler
to catch up and checks (chaos/checks.py). Prints a table, writes the JSON summary, exits
1 if a check failed. Everything it started is stopped, on failure and Ctrl-C too. Every
process's log is kept beside the summary.

Environment: CHAOS_PROFILE (short | full), CHAOS_BROKER (redis | rabbitmq),
CHAOS_TIMINGS (production | shortened; the default: production on RabbitMQ, shortened on
Redis, whose 600 s visibility timeout no bounded run can wait out),
CHAOS_SERVICES_PORT_BASE (27632: primary; replica +1, cache Redis +2, broker +3 (RabbitMQ:
+3 to +5)), CHAOS_PORT (18900; the receiver +1), CHAOS_CONCURRENCY (8),
CHAOS_SUMMARY (artifacts/chaos/summary-BROKER-PROFILE.json).
"""

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from bench.processes import BIN, ROOT, disposable_services, gunicorn, services_env
from chaos.checks import (
    WORKER_FAULT,
    Check,
    Window,
    caught_up,
    crash_work_settled,
    data_checks,
    response_checks,
    wait_drained,
    welcome_emails,
    worker_crash_recovery,
)
from chaos.faults import BrokerRabbitMQ, BrokerRedis, Celery, Services, wait_until
from chaos.load import Load
from chaos.receiver import Receiver


@dataclass(frozen=True)
class Profile:
    """Timings of one kind of run, in seconds."""

    warmup: float  # load before the first fault
    hold: float  # each fault lasts this long before it is undone
    gap: float  # load between one fault's recovery and the next fault
    tail: float  # load after the last recovery
    drain_bound: float  # the most the backlog may take to reach zero afterwards


PROFILES = {
    "short": Profile(warmup=4, hold=3, gap=2, tail=3, drain_bound=60),
    "full": Profile(warmup=10, hold=9, gap=6, tail=10, drain_bound=60),
}
PROFILE = os.environ.get("CHAOS_PROFILE", "short")
BROKER = os.environ.get("CHAOS_BROKER", "") or "redis"
TIMINGS = os.environ.get("CHAOS_TIMINGS", "") or (
    "production" if BROKER == "rabbitmq" else "shortened"
)
SERVICES_PORT_BASE = int(os.environ.get("CHAOS_SERVICES_PORT_BASE", "27632"))
APP_PORT = int(os.environ.get("CHAOS_PORT", "18900"))
CONCURRENCY = int(os.environ.get("CHAOS_CONCURRENCY", "8"))
SUMMARY = Path(
    os.environ.get("CHAOS_SUMMARY", "")
    or ROOT / "artifacts" / "chaos" / f"summary-{BROKER}-{PROFILE}.json"
)
READY_BOUND_SECONDS = 60
# Pause of each load client between its requests: bounded load on a shared machine.
CLIENT_PAUSE_SECONDS = 0.1

# Production settings (DEBUG off) with these changes, all documented in docs/reliability.md.
RUN_SETTINGS = {
    # Production settings but for the password hasher, the one not used here (it says why).
    "DJANGO_SETTINGS_MODULE": "chaos.settings",
    "DJANGO_DEBUG": "false",
    "DJANGO_SECURE_SSL_REDIRECT": "false",  # plain HTTP on loopback, as `make serve`
    "DJANGO_SECURE_COOKIES": "false",
    "WEB_CONCURRENCY": "3",
    # One client IP sends everything: the per-IP limits would otherwise answer 429.
    "THROTTLE_ANON_RATE": "100000/minute",
    "THROTTLE_USER_RATE": "100000/minute",
    "THROTTLE_SIGNUP_RATE": "100000/minute",
    "THROTTLE_LOGIN_IP_RATE": "100000/minute",
    # The receiver is on 127.0.0.1, which the SSRF guard refuses in production.
    "WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
    "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
    "CELERY_METRICS_PORT": "0",
}
# CHAOS_TIMINGS=shortened: seconds instead of minutes, so that Redis's redelivery and the
# sweeps happen within the run. Production timings (RabbitMQ's default) change none.
SHORTENED_TIMINGS = {
    "CELERY_VISIBILITY_TIMEOUT": "10",
    "CELERY_UNACKED_RESTORE_INTERVAL": "1",
    "CELERY_TASK_TIME_LIMIT": "5",
    "EVENTS_SWEEP_INTERVAL_SECONDS": "1",
    "EVENTS_SWEEP_AFTER_SECONDS": "2",
    # A message lost with a killed worker is handed over again after this, not 15 min.
    "EVENTS_REDISPATCH_AFTER_SECONDS": "10",
    "EVENTS_RETRY_BACKOFF_SECONDS": "0.5",
    "EVENTS_RETRY_BACKOFF_MAX_SECONDS": "2",
    "WEBHOOK_RETRY_BACKOFF_SECONDS": "0.5",
    "WEBHOOK_TIMEOUT_SECONDS": "3",
}
# The worker is killed once nothing has been owed for longer than CAUGHT_UP_SECONDS
# (waiting at most the bound; killed anyway after it), and then everything owed must be
# done within the next bound of when it was due (the kill, or the end of a retry's
# backoff): on RabbitMQ, whether or not the wait succeeded. On Redis the figure is
# reported, not checked: with production timings its visibility timeout (600 s) cannot
# meet it, with shortened ones it says nothing.
CAUGHT_UP_SECONDS = 2.0
CAUGHT_UP_BOUND_SECONDS = 60.0
WORKER_CRASH_RECOVERY_BOUND_SECONDS = 30.0
# With production timings the backlog may wait longer: a webhook delivery whose attempt
# the primary's restart cut off waits WEBHOOK_STALLED_AFTER_SECONDS (60 s with RabbitMQ)
# for the sweeper; with Redis, a killed worker's tasks wait out the visibility timeout.
PRODUCTION_DRAIN_EXTRA_SECONDS = {"rabbitmq": 60.0, "redis": 660.0}


def log(message: str) -> None:
    """Progress on stderr; results go to stdout."""
    print(f"chaos: {message}", file=sys.stderr, flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def readiness(port: int) -> str:
    """/readyz's `status` ("ok", "degraded", "unavailable"), or "no answer"."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return str(json.loads(response.read())["status"])
    except urllib.error.HTTPError as error:
        return str(json.loads(error.read()).get("status", error.code))
    except (OSError, ValueError):
        return "no answer"


def wait_ready(port: int) -> None:
    """Wait until /readyz says every dependency is ok."""
    wait_until(lambda: readiness(port) == "ok", seconds=READY_BOUND_SECONDS, what="/readyz ok")


def setup_django(app_env: dict[str, str]) -> None:
    """Point this process's Django at the run's primary (for setup and the checks)."""
    import django

    # The checks read what was committed: the primary only, no cache.
    os.environ.update({**app_env, "DATABASE_REPLICA_URLS": "", "REDIS_URL": ""})
    django.setup()


def close_database_connections() -> None:
    """Drop this process's database connections; the next query opens a fresh one."""
    from django.db import connections

    connections.close_all()


def subscribe(url: str) -> str:
    """Subscribe `url` to every topic; return the signing secret."""
    from events.registry import topics
    from events.webhooks import webhook_subscription_create

    return webhook_subscription_create(url=url, topics=list(topics())).secret


def run_faults(
    services: Services,
    broker: BrokerRedis | BrokerRabbitMQ,
    celery: Celery,
    profile: Profile,
    epoch: float,
    wall_epoch: float,
    behind: list[str],
) -> list[Window]:
    """Inject each fault in turn, hold it, undo it, wait until ready; return the windows.

    `behind` gets the worker's fault if the worker was still behind the load when killed
    (reported beside the recovery figure, which is bounded all the same).
    """
    windows = []
    time.sleep(profile.warmup)
    for fault in services.faults(broker, celery):
        if fault.name == WORKER_FAULT:
            # The backlog earlier faults left is handled first, so that the time the
            # crash's events take to come back measures the crash, not that backlog.
            try:
                wait_until(
                    lambda: caught_up(older_than=CAUGHT_UP_SECONDS),
                    seconds=CAUGHT_UP_BOUND_SECONDS,
                    what="the worker to catch up",
                )
            except RuntimeError as late:
                # Killed anyway: the bound then holds the backlog too, and may fail.
                log(f"{late}; killing it with the backlog")
                behind.append(fault.name)
        window = Window(fault.name, fault.expect, injected=time.monotonic() - epoch)
        windows.append(window)
        log(f"inject {fault.name}")
        fault.inject()
        time.sleep(profile.hold)
        fault.restore()
        window.restored = time.monotonic() - epoch
        wait_ready(APP_PORT)
        window.recovered = time.monotonic() - epoch
        log(f"{fault.name} recovered after {window.recovered - window.restored:.1f}s")
        if fault.name == WORKER_FAULT:
            wait_crash_recovered(window, epoch=epoch, wall_epoch=wall_epoch)
        time.sleep(profile.gap)
    time.sleep(profile.tail - profile.gap)
    return windows


def wait_crash_recovered(window: Window, *, epoch: float, wall_epoch: float) -> None:
    """Wait until the work the worker's crash owed is done, at most until the bound after
    the kill: the next fault (the primary's restart) would otherwise cut that recovery
    short, and its own retries would be what the figure measures."""
    left = WORKER_CRASH_RECOVERY_BOUND_SECONDS - (time.monotonic() - epoch - window.injected)
    try:
        wait_until(
            lambda: crash_work_settled(killed_at=wall_epoch + window.injected),
            seconds=max(left, 0.0),
            what="the work the worker's crash owed",
        )
    except RuntimeError as late:
        # The check reports it; the run goes on to the next fault.
        log(str(late))


def report(summary: dict[str, Any]) -> None:
    """The short human table on stdout."""
    requests = summary["requests"]
    events = summary["events"]
    print(
        f"\nchaos ({summary['profile']}, {summary['broker']} broker, "
        f"{summary['celery_and_outbox_timings']} timings): {requests['sent']} requests in "
        f"{summary['load_seconds']:.0f} s, {summary['concurrency']} clients"
    )
    print("  by status class: " + ", ".join(f"{k} {v}" for k, v in requests["by_class"].items()))
    print("  non-2xx by cause:")
    for row in requests["non_2xx"] or [
        {"cause": "-", "status": "-", "code": "", "kind": "-", "count": 0, "max_seconds": 0}
    ]:
        print(
            f"    {row['cause']:<22} {row['status']} {row['code']:<20} {row['kind']:<7} "
            f"x{row['count']}  max {row['max_seconds']} s"
        )
    print(f"  max 503 latency: {requests['max_503_seconds']} s")
    print(
        f"  events: {events['events']} {events['events_by_topic']}, users {events['users']}, "
        f"201 sign-ups {events['signups_201']}, handler runs {events['handler_runs']}, "
        f"emails {events['welcome_emails']}, webhooks {events['webhooks_received']}"
    )
    drain = events["drain"]
    print(
        f"  backlog: outbox zero after {drain['outbox_zero_s']} s, all handled after "
        f"{drain['settled_s']} s (bound {drain['bound_s']:.0f} s)"
    )
    print(
        f"  worker crash recovery: {events['worker_crash_recovery_s']} s at most after the "
        f"work owed at the SIGKILL was due ({events['worker_crash']['owed']})"
    )
    print("  faults (recovery = restore to /readyz ok):")
    for fault in summary["faults"]:
        print(
            f"    {fault['name']:<22} held {fault['restored'] - fault['injected']:.1f} s, "
            f"recovery {fault['recovered'] - fault['restored']:.1f} s"
        )
    for check in summary["checks"]:
        print(f"  {'PASS' if check['passed'] else 'FAIL'} {check['name']}: {check['detail']}")
    print(f"  summary: {SUMMARY}")


def main() -> None:
    """Run the profile; exit 1 if any check failed."""
    if PROFILE not in PROFILES:
        sys.exit(f"chaos: CHAOS_PROFILE must be one of {', '.join(PROFILES)}")
    profile = PROFILES[PROFILE]
    signal.signal(signal.SIGTERM, _interrupt)
    # Logs of every process, kept for a look afterwards (CI keeps artifacts/).
    work = SUMMARY.parent / f"logs-{BROKER}-{PROFILE}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log(f"logs in {work}")
    passed = False
    started_at = time.time()
    try:
        with contextlib.ExitStack() as stack:
            services_file = work / "services.env"
            base = str(SERVICES_PORT_BASE)
            # scripts/services.sh starts RabbitMQ beside the other services when asked.
            os.environ["BROKER"] = BROKER
            settings = stack.enter_context(disposable_services("chaos", base, services_file))
            broker: BrokerRedis | BrokerRabbitMQ
            if BROKER == "rabbitmq":
                broker = BrokerRabbitMQ(settings, services_env("chaos", base, services_file))
            else:
                broker = BrokerRedis(SERVICES_PORT_BASE + 3, work)
                stack.callback(broker.stop)
                broker.start()
            log(f"broker {BROKER}, {TIMINGS} timings")
            (work / "emails").mkdir()
            app_env = {
                **os.environ,
                **settings,
                **RUN_SETTINGS,
                **(SHORTENED_TIMINGS if TIMINGS == "shortened" else {}),
                "CELERY_BROKER_URL": broker.url,
                "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
                "EMAIL_FILE_PATH": str(work / "emails"),
            }
            for command in (["migrate", "--noinput", "-v0"], ["collectstatic", "--noinput", "-v0"]):
                subprocess.run(
                    [str(BIN / "python"), "manage.py", *command], cwd=ROOT, env=app_env, check=True
                )
            setup_django(app_env)
            receiver = stack.enter_context(Receiver(APP_PORT + 1))
            receiver.secret = subscribe(receiver.url)

            (work / "metrics-worker").mkdir()
            celery = Celery(
                {**app_env, "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics-worker")}, work
            )
            stack.callback(celery.stop)
            celery.start_beat()
            celery.start_worker()
            web_env = {**app_env, "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics-web")}
            server_log = stack.enter_context((work / "gunicorn.log").open("w"))
            stack.enter_context(gunicorn("config.wsgi", APP_PORT, web_env, server_log))
            wait_ready(APP_PORT)
            controls = Services(settings, services_env("chaos", base, services_file))

            log(f"load: {CONCURRENCY} clients; faults held {profile.hold:.0f} s each")
            epoch = time.monotonic()
            # The same moment on the wall clock, for the email files' modification times.
            wall_epoch = time.time()
            load = Load(
                port=APP_PORT, concurrency=CONCURRENCY, epoch=epoch, pause=CLIENT_PAUSE_SECONDS
            )
            behind: list[str] = []
            load.start()
            try:
                windows = run_faults(controls, broker, celery, profile, epoch, wall_epoch, behind)
            finally:
                responses = load.stop()
            load_seconds = time.monotonic() - epoch
            log(f"load stopped after {len(responses)} requests; waiting for the backlog")
            # This process's connection predates the primary's restart.
            close_database_connections()
            queued_at_stop = broker.queued()
            drain_bound = profile.drain_bound
            if TIMINGS == "production":
                drain_bound += PRODUCTION_DRAIN_EXTRA_SECONDS[BROKER]
            drain = wait_drained(bound=drain_bound, queued=broker.queued)
            drain["broker_queued_at_stop"] = queued_at_stop

            request_summary, checks = response_checks(responses, windows)
            emails, email_first_sent = welcome_emails(work / "emails", epoch=wall_epoch)
            event_summary, more = data_checks(
                responses=responses,
                emails=emails,
                email_first_sent=email_first_sent,
                webhooks=receiver.counts(),
                webhook_first_arrivals=receiver.first_arrivals(epoch=epoch),
                windows=windows,
                bad_signatures=receiver.bad_signatures,
                drain=drain,
            )
            checks += more
            recovery, recovery_check = worker_crash_recovery(
                windows=windows,
                wall_epoch=wall_epoch,
                bound=WORKER_CRASH_RECOVERY_BOUND_SECONDS if BROKER == "rabbitmq" else None,
            )
            event_summary["worker_crash_recovery_s"] = recovery.pop("recovery_s")
            event_summary["worker_crash"] = recovery
            event_summary["worker_behind_when_killed"] = bool(behind)
            checks.append(recovery_check)
            passed = all(check.passed for check in checks)
            summary = build_summary(
                profile,
                started_at,
                load_seconds,
                request_summary,
                event_summary,
                windows,
                checks,
                passed,
            )
            SUMMARY.parent.mkdir(parents=True, exist_ok=True)
            SUMMARY.write_text(json.dumps(summary, indent=2) + "\n")
            report(summary)
    finally:
        log(f"{'passed' if passed else 'FAILED'}; logs in {work}")
    if not passed:
        sys.exit(1)


def build_summary(
    profile: Profile,
    started_at: float,
    load_seconds: float,
    requests: dict[str, Any],
    events: dict[str, Any],
    windows: list[Window],
    checks: list[Check],
    passed: bool,
) -> dict[str, Any]:
    """The machine-readable summary (docs/reliability.md describes each field)."""
    return {
        "command": ("make chaos" if PROFILE == "full" else "make chaos-short")
        + (" BROKER=rabbitmq" if BROKER == "rabbitmq" else ""),
        "profile": PROFILE,
        "broker": BROKER,
        "celery_and_outbox_timings": TIMINGS,
        "passed": passed,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started_at)),
        "timings": asdict(profile),
        "concurrency": CONCURRENCY,
        "load_seconds": round(load_seconds, 1),
        "cpus": os.cpu_count(),
        "requests": requests,
        "events": events,
        "faults": [
            {
                **asdict(window),
                **{
                    key: round(value, 2)
                    for key, value in asdict(window).items()
                    if isinstance(value, float)
                },
            }
            for window in windows
        ],
        "checks": [asdict(check) for check in checks],
    }


if __name__ == "__main__":
    main()
