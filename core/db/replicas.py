"""Replica health: which read replicas may serve reads right now.

A daemon thread in each process probes every replica each REPLICA_CHECK_INTERVAL seconds:
is it reachable, is it still a standby, and how far behind the primary is it. The router
asks `ReplicaMonitor.readable()` on every read, which does no I/O, so no request ever waits
on a dead replica's connect timeout once it has been seen down.

This is a small circuit breaker written here rather than pybreaker: pybreaker readmits a
service by letting one real call through after its cool-down, which would make a request
wait on a dead replica; here only the background probe readmits a replica.
"""

import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections
from prometheus_client import Counter, Gauge

from core.db.postgres import probe_conninfo

logger = logging.getLogger(__name__)

# Each gunicorn worker probes on its own; under multiprocess metrics a scrape shows the most
# pessimistic live worker's view (min of "up", max of lag), and an exited worker's drops out.
# A replica's last measure counts for this many probe intervals.
STALE_AFTER_CHECKS = 3

REPLICA_UP = Gauge(
    "db_replica_up",
    "1 if the replica is admitted for reads, else 0.",
    ["alias"],
    multiprocess_mode="livemin",
)
REPLICA_LAG = Gauge(
    "db_replica_lag_seconds",
    "Replication lag of the replica at the last probe.",
    ["alias"],
    multiprocess_mode="livemax",
)
REPLICA_MARKED_DOWN = Counter(
    "db_replica_marked_down_total",
    "Times a replica was taken out of rotation.",
    ["alias", "reason"],
)


@dataclass
class ReplicaState:
    """What the last probe (or a failed query) found about one replica."""

    reachable: bool = False
    lag_seconds: float = float("inf")
    checked_at: float = 0.0

    def admitted(self, max_lag: float, *, measured_since: float = 0.0) -> bool:
        """May this replica serve reads? Not on a measure older than `measured_since`."""
        return self.reachable and self.lag_seconds <= max_lag and self.checked_at >= measured_since


class ReplicaMonitor:
    """Tracks the health and lag of each replica, probing them in the background.

    Until the first probe of a replica completes it gets no reads: an unknown lag is
    treated as too much.
    """

    def __init__(self, aliases: list[str] | None = None, *, background: bool = True) -> None:
        # None: the configured replicas, read on first use. The monitor is built when its
        # module is imported, which may happen before settings can load (and then must
        # not be what fails). Without `background` nothing probes on its own: the caller
        # measures with check_now() or states what it measured with record().
        self._aliases = None if aliases is None else list(aliases)
        self._background = background
        self._states: dict[str, ReplicaState] = {}
        # (monotonic time, primary WAL position) at recent probes; see `lag_bound`.
        self._primary_positions: deque[tuple[float, int]] = deque(maxlen=64)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._probe_pid: int | None = None

    @property
    def aliases(self) -> list[str]:
        """The replica aliases this monitor watches."""
        if self._aliases is None:
            self._aliases = list(settings.REPLICA_DATABASES)
        return self._aliases

    def readable(self) -> list[str]:
        """The replicas admitted for reads now (healthy and within the lag limit)."""
        self._ensure_probing()
        max_lag = settings.REPLICA_MAX_LAG_SECONDS
        # A probe stuck on a hung server measures nothing: its last verdict goes stale and
        # stops counting, or a replica seen caught up would keep reads while falling behind.
        fresh_since = time.monotonic() - STALE_AFTER_CHECKS * settings.REPLICA_CHECK_INTERVAL
        with self._lock:
            return [
                alias
                for alias in self.aliases
                if self._states.get(alias, ReplicaState()).admitted(
                    max_lag, measured_since=fresh_since
                )
            ]

    def choose(self) -> str | None:
        """A random admitted replica, spreading reads across them; None if there is none."""
        readable = self.readable()
        # Not for security: spreading load needs no cryptographic randomness.
        return random.choice(readable) if readable else None  # noqa: S311

    def state(self, alias: str) -> ReplicaState:
        """A copy of what is known about one replica."""
        with self._lock:
            state = self._states.get(alias, ReplicaState())
            return ReplicaState(state.reachable, state.lag_seconds, state.checked_at)

    def mark_down(self, alias: str, *, reason: str) -> None:
        """Take a replica out of rotation after a failed query; the probe readmits it."""
        with self._lock:
            state = self._states.setdefault(alias, ReplicaState())
            was_reachable = state.reachable
            state.reachable = False
        if was_reachable:
            logger.warning("replica %s marked down: %s", alias, reason)
            REPLICA_MARKED_DOWN.labels(alias, reason).inc()
        REPLICA_UP.labels(alias).set(0)

    def check_now(self) -> None:
        """Probe every replica once, in this thread."""
        primary_position = _primary_wal_position()
        if primary_position is not None:
            self._primary_positions.append((time.monotonic(), primary_position))
        for alias in self.aliases:
            self.record(alias, self._probe(alias, primary_position))

    def _probe(self, alias: str, primary_position: int | None) -> ReplicaState:
        try:
            with _connect(alias) as conn:
                row = conn.execute(
                    "SELECT pg_is_in_recovery(),"
                    " pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint,"
                    " EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float"
                ).fetchone()
        except psycopg.Error as exc:
            logger.warning("replica %s probe failed: %s", alias, exc)
            return ReplicaState(reachable=False, checked_at=time.monotonic())
        in_recovery, replay_position, replay_age = row or (False, None, None)
        if not in_recovery:
            # Promoted: no longer a copy of our primary, so it must not serve our reads.
            return ReplicaState(reachable=False, checked_at=time.monotonic())
        return ReplicaState(
            reachable=True,
            lag_seconds=lag_bound(
                primary_position=primary_position,
                replay_position=replay_position,
                replay_age=replay_age,
                primary_history=self._primary_positions,
                last_lag=self.state(alias).lag_seconds,
                now=time.monotonic(),
            ),
            checked_at=time.monotonic(),
        )

    def record(self, alias: str, state: ReplicaState) -> None:
        """What a probe measured of one replica: the router's answer from now on."""
        with self._lock:
            self._states[alias] = state
        REPLICA_UP.labels(alias).set(1 if state.admitted(settings.REPLICA_MAX_LAG_SECONDS) else 0)
        REPLICA_LAG.labels(alias).set(state.lag_seconds if state.reachable else float("nan"))

    def _ensure_probing(self) -> None:
        # One thread per process; gunicorn forks workers after import, and a thread does
        # not survive a fork, so each process starts its own on first use.
        if not self._background or self._probe_pid == os.getpid() or not self.aliases:
            return
        with self._lock:
            if self._probe_pid == os.getpid():
                return
            self._probe_pid = os.getpid()
        threading.Thread(target=self._probe_forever, name="replica-probe", daemon=True).start()

    def _probe_forever(self) -> None:
        while True:
            try:
                self.check_now()
            except Exception:  # The probe must outlive any surprise; the log says what.
                logger.exception("replica probe crashed")
            self._wake.wait(settings.REPLICA_CHECK_INTERVAL)
            self._wake.clear()


def _conninfo(alias: str) -> str:
    # A server that accepts and then stops answering must not hold the probe: bound the
    # statement, and the unacknowledged-send time of the socket (ms).
    return probe_conninfo(
        connections[alias].settings_dict,
        connect_timeout=settings.REPLICA_CONNECT_TIMEOUT,
        statement_timeout=settings.REPLICA_CHECK_INTERVAL,
        application_name="replica-probe",
        tcp_user_timeout=int(settings.REPLICA_CHECK_INTERVAL * 1000),
    )


def _connect(alias: str) -> psycopg.Connection[Any]:
    return psycopg.connect(_conninfo(alias), autocommit=True)


def _primary_wal_position() -> int | None:
    try:
        with _connect("default") as conn:
            row = conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint"
            ).fetchone()
    except psycopg.Error as exc:
        logger.warning("primary probe failed: %s", exc)
        return None
    return int(row[0]) if row else None


def lag_bound(
    *,
    primary_position: int | None,
    replay_position: int | None,
    replay_age: float | None,
    primary_history: Iterable[tuple[float, int]],
    last_lag: float,
    now: float,
) -> float:
    """An upper bound, in seconds, on how old the oldest write missing on a replica is.

    `primary_history` holds (monotonic time, primary WAL position) at recent probes;
    `last_lag` is the replica's previous measure, `now` the monotonic time.
    """
    if primary_position is None:
        # The primary is unreachable, so nothing new is being written: the replica
        # cannot fall further behind than when it was last measured.
        return last_lag
    if replay_position is None:
        return float("inf")
    if replay_position >= primary_position:
        # Everything the primary has written is replayed. The replay timestamp ages
        # while the primary is idle, so on its own it would report a lag that is not there.
        return 0.0
    # Two upper bounds, take the tighter. The age of the last replayed commit overstates
    # lag after an idle spell; the last probe at which the primary had written no more
    # than the replica has replayed bounds it from the primary's side.
    bounds = [replay_age] if replay_age is not None else []
    bounds += [
        now - seen_at for seen_at, position in primary_history if position <= replay_position
    ]
    return max(min(bounds), 0.0) if bounds else float("inf")
