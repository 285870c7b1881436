"""The processes the chaos run starts (broker, Celery worker and beat) and the faults it injects.

Each fault is a pair of actions, inject and restore, on the disposable services of
scripts/services.sh or on processes of our own; restoring a stopped server is the
script's own `up`, which starts only what is down.
"""

import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import LiteralString

import psycopg
import redis

from bench.processes import BIN, ROOT, SERVICES_SCRIPT


def wait_until(condition: Callable[[], bool], *, seconds: float, what: str) -> None:
    """Poll `condition` until it holds; RuntimeError after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {seconds:.0f}s waiting for {what}")
        time.sleep(0.1)


def _group_gone(process: subprocess.Popen[bytes]) -> bool:
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return True
    return False


def stop_group(process: subprocess.Popen[bytes] | None, *, grace: float = 15) -> None:
    """SIGTERM a process group we started; SIGKILL it if it outlives `grace` seconds."""
    if process is None or _group_gone(process):
        if process is not None:
            process.poll()
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
        wait_until(lambda: _group_gone(process), seconds=grace, what="its children")
    except (subprocess.TimeoutExpired, RuntimeError):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def kill_group(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL a process group we started, as a crash would."""
    if process is None:
        raise RuntimeError("not started")
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


class BrokerRedis:
    """The Celery broker: a Redis of its own, so cache faults and broker faults are separate.

    Append-only file fsynced on every write, as a production broker must be: a broker
    that loses acknowledged messages when killed loses the events already marked
    published in the outbox.
    """

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.dir = workdir / "broker"
        self.dir.mkdir(exist_ok=True)
        # A password, as every Redis of this project has: the service refuses a broker
        # URL without one. In a config file only we read, not on the command line.
        password = secrets.token_hex(24)
        self.config = self.dir / "redis.conf"
        self.config.touch(mode=0o600)
        self.config.write_text(f"requirepass {password}\n")
        self.url = f"redis://default:{password}@127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it (loading its append-only file) and wait for PING."""
        log = (self.dir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                "redis-server",
                str(self.config),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_until(self.alive, seconds=15, what="the broker's Redis")

    def alive(self) -> bool:
        """Whether it answers PING."""
        client = redis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL it, as a crash would."""
        kill_group(self.process)

    def stop(self) -> None:
        """Stop it for good."""
        stop_group(self.process)

    def queued(self) -> int:
        """Messages waiting or being worked on (acks are late) in the broker."""
        client = redis.Redis.from_url(self.url, socket_timeout=2)
        try:
            waiting = sum(int(client.llen(q)) for q in ("events", "webhooks", "housekeeping"))
            return waiting + int(client.hlen("unacked"))
        finally:
            client.close()

    def cut_connections(self) -> None:
        """Close every client's connection (the web's publishers, the worker's consumer)."""
        client = redis.Redis.from_url(self.url, socket_timeout=2)
        try:
            client.client_kill_filter(_type="normal", skipme=True)
        finally:
            client.close()


class BrokerRabbitMQ:
    """The Celery broker when it is RabbitMQ: the node of scripts/services.sh BROKER=rabbitmq.

    Production settings: quorum queues, publisher confirms. Restarting it is the script's
    own `up`, which starts only what is down.
    """

    def __init__(self, settings: dict[str, str], script_env: dict[str, str]) -> None:
        self.url = settings["CELERY_BROKER_URL"]
        self.script_env = script_env
        self.pid_file = Path(settings["SERVICES_DIR"]) / "run" / "rabbitmq.pid"

    def ctl(self, *args: str) -> str:
        """rabbitmqctl against the node (the script knows its name and cookie)."""
        completed = subprocess.run(
            [*SERVICES_SCRIPT, "rabbitmqctl", *args],
            env=self.script_env,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return completed.stdout

    def start(self) -> None:
        """Start it again (its quorum queues recover from their log) and wait until ready."""
        subprocess.run(
            [*SERVICES_SCRIPT, "up"],
            env=self.script_env,
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=120,
        )

    def kill(self) -> None:
        """SIGKILL the node, as a crash would."""
        pid = int(self.pid_file.read_text().strip())
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), seconds=15, what="RabbitMQ to die")

    def stop(self) -> None:
        """Nothing: scripts/services.sh down stops it with the other services."""

    def cut_connections(self) -> None:
        """Close every client's connection (the web's publishers, the worker's consumer)."""
        self.ctl("close_all_connections", "chaos: connection cut")

    def queued(self) -> int:
        """Messages in the broker: ready or unacknowledged, and retries waiting their turn."""
        lines = self.ctl("list_queues", "--no-table-headers", "--quiet", "name", "messages")
        total = 0
        for line in lines.splitlines():
            name, _, count = line.partition("\t")
            # Celery's own reply and event queues carry no tasks.
            if (
                count.strip().isdigit()
                and not name.startswith("celeryev.")
                and "pidbox" not in name
            ):
                total += int(count)
        return total


class Celery:
    """`celery -A config worker` (restartable, as a supervisor would) and one beat."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env = env
        self.workdir = workdir
        self.worker: subprocess.Popen[bytes] | None = None
        self.beat: subprocess.Popen[bytes] | None = None
        self.worker_log = workdir / "worker.log"
        self.worker_starts = 0

    def _spawn(self, args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
        log = log_path.open("ab")
        process = subprocess.Popen(
            [str(BIN / "celery"), "-A", "config", *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return process

    def start_worker(self) -> None:
        """Start a worker for both queues and wait until it consumes."""
        self.worker_starts += 1
        offset = self.worker_log.stat().st_size if self.worker_log.exists() else 0
        hostname = f"chaos{self.worker_starts}@%h"
        queues = ["--queues", "events,webhooks,housekeeping", "--concurrency", "2"]
        options = ["--without-gossip", "--without-mingle", "--hostname", hostname]
        self.worker = self._spawn(["worker", *queues, *options], self.worker_log)

        worker = self.worker

        def ready() -> bool:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited; see {self.worker_log}")
            with self.worker_log.open("rb") as handle:
                handle.seek(offset)
                return b" ready." in handle.read()

        wait_until(ready, seconds=60, what="the Celery worker")

    def start_beat(self) -> None:
        """Start the one beat (it schedules the outbox sweeper)."""
        schedule = ["--schedule", str(self.workdir / "beat-schedule")]
        self.beat = self._spawn(["beat", *schedule], self.workdir / "beat.log")

    def consuming(self) -> bool:
        """Whether the worker's last word on its broker connection (its log) is that it
        connected, not that it lost the connection or could not connect."""
        text = self.worker_log.read_bytes()
        connected = text.rfind(b"Connected to ")
        lost = max(text.rfind(b"Connection to broker lost"), text.rfind(b"Cannot connect to"))
        return connected > lost

    def wait_consuming(self) -> None:
        """Wait until the worker has reconnected to the broker (its retries back off: 2 s,
        then 4, 6, 8...)."""
        wait_until(self.consuming, seconds=60, what="the worker to reconnect to the broker")

    def kill_worker(self) -> None:
        """SIGKILL the worker and its pool at once, as a crashed host would."""
        kill_group(self.worker)

    def stop(self) -> None:
        """Warm shutdown of the worker and beat."""
        stop_group(self.worker)
        stop_group(self.beat)


@dataclass(frozen=True)
class Fault:
    """One fault: what it does, how to undo it, and what the service should do meanwhile."""

    name: str
    inject: Callable[[], None]
    restore: Callable[[], None]
    expect: str


class Services:
    """Actions on the scripts/services.sh instance (its settings from `up`)."""

    def __init__(self, settings: dict[str, str], script_env: dict[str, str]) -> None:
        self.settings = settings
        self.script_env = script_env
        self.redis_pid_file = Path(settings["SERVICES_DIR"]) / "run" / "redis.pid"
        self.replica_url = settings["DATABASE_REPLICA_URLS"]

    def up(self) -> None:
        """Start whatever is down (scripts/services.sh up) and wait until it streams."""
        subprocess.run(
            [*SERVICES_SCRIPT, "up"],
            env=self.script_env,
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=120,
        )

    def pg_ctl(self, data_key: str, *args: str) -> None:
        """pg_ctl on the primary's or the replica's data dir, as the servers' owner."""
        command = [
            os.path.join(self.settings["PG_BINDIR"], "pg_ctl"),
            "-D",
            self.settings[data_key],
            *args,
        ]
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root; scripts/services.sh runs it as this user.
            command = ["runuser", "-u", self.settings["SERVICES_PG_USER"], "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60, cwd="/")

    def redis_signal(self, signum: int) -> None:
        """Send a signal to the cache's Redis."""
        os.kill(int(self.redis_pid_file.read_text().strip()), signum)

    def replica_sql(self, sql: LiteralString) -> None:
        """Run one statement on the replica."""
        with psycopg.connect(self.replica_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql)

    def faults(self, broker: BrokerRedis | BrokerRabbitMQ, celery: Celery) -> list[Fault]:
        """The faults in the order the run injects them. The worker's crash comes after the
        broker's faults and before the primary's restart, whose handler retries (with
        production backoffs) would otherwise be what its recovery time measures."""

        def broker_start() -> None:
            broker.start()
            # Undone once the worker consumes again: the connections cut that follows would
            # otherwise find the worker still backing off, and miss it.
            celery.wait_consuming()

        return [
            Fault(
                "redis_killed",
                inject=lambda: self.redis_signal(signal.SIGKILL),
                restore=self.up,
                expect="all 2xx: the cache's breaker skips Redis; the database answers",
            ),
            Fault(
                "redis_hung",
                inject=lambda: self.redis_signal(signal.SIGSTOP),
                restore=lambda: self.redis_signal(signal.SIGCONT),
                expect="all 2xx: Redis calls time out (0.2 s), then the breaker skips them",
            ),
            Fault(
                "replica_stopped",
                inject=lambda: self.pg_ctl("SERVICES_REPLICA_DATA", "stop", "-m", "immediate"),
                restore=self.up,
                expect="all 2xx: reads that failed on the replica run again on the primary",
            ),
            Fault(
                "replica_replay_paused",
                inject=lambda: self.replica_sql("SELECT pg_wal_replay_pause()"),
                restore=lambda: self.replica_sql("SELECT pg_wal_replay_resume()"),
                expect="all 2xx: a lagging replica gets no reads; pins keep writers on the primary",
            ),
            Fault(
                "broker_down",
                inject=broker.kill,
                restore=broker_start,
                expect="all 2xx (sign-ups 201): events wait in the outbox; beat sweeps them later",
            ),
            Fault(
                "broker_connections_cut",
                inject=broker.cut_connections,
                # Nothing to undo: the clients reconnect by themselves.
                restore=lambda: None,
                expect="all 2xx: a publish cut before its confirmation leaves its event in the "
                "outbox for the sweeper; the worker reconnects, its unacknowledged tasks return",
            ),
            Fault(
                "worker_killed",
                inject=celery.kill_worker,
                restore=celery.start_worker,
                expect="all 2xx: unacknowledged tasks come back (RabbitMQ: at once; Redis: after "
                "the visibility timeout)",
            ),
            Fault(
                "primary_restarted",
                inject=lambda: self.pg_ctl("SERVICES_PRIMARY_DATA", "stop", "-m", "fast", "-w"),
                restore=self.up,
                expect="503 (under 3 s) for what needs the primary, nothing else non-2xx",
            ),
        ]
