"""core.db.replicas: lag arithmetic, and the probe against the real replica."""

import time

import pytest

from core.db.replicas import ReplicaMonitor, ReplicaState, lag_bound
from core.tests import replica_control as replica


def lag(
    primary_position: int | None,
    replay_position: int | None,
    *,
    replay_age: float | None,
    history: tuple[tuple[float, int], ...] = (),
    last_lag: float = 0.0,
    now: float = 1000.0,
) -> float:
    return lag_bound(
        primary_position=primary_position,
        replay_position=replay_position,
        replay_age=replay_age,
        primary_history=history,
        last_lag=last_lag,
        now=now,
    )


class TestLagBound:
    def test_caught_up_is_zero_however_old_the_last_replayed_commit(self) -> None:
        assert lag(500, 500, replay_age=3600.0) == 0.0
        assert lag(500, 600, replay_age=3600.0) == 0.0

    def test_behind_takes_the_tighter_of_the_two_bounds(self) -> None:
        history = ((970.0, 100), (998.0, 400), (999.0, 500))
        # Replayed up to 400: the primary was there 2 s ago; the last replayed commit is
        # an hour old only because the primary had been idle before.
        assert lag(500, 400, replay_age=3600.0, history=history) == 2.0
        # A recent replayed commit is the tighter bound.
        assert lag(500, 400, replay_age=0.5, history=history) == 0.5

    def test_unknown_is_too_much(self) -> None:
        assert lag(500, None, replay_age=None) == float("inf")
        assert lag(500, 400, replay_age=None) == float("inf")

    def test_primary_unreachable_keeps_the_last_measure(self) -> None:
        assert lag(None, 400, replay_age=99.0, last_lag=1.5) == 1.5


def test_unprobed_replicas_are_not_admitted() -> None:
    state = ReplicaMonitor(["replica_0"]).state("replica_0")
    assert not state.admitted(max_lag=3600.0)


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_idle_primary_does_not_make_a_caught_up_replica_look_lagged(services, settings) -> None:
    from conftest import wait_for_replicas

    settings.REPLICA_MAX_LAG_SECONDS = 0.5
    wait_for_replicas()
    replica.wait_until(
        lambda: (
            replica.replica_sql(
                "SELECT EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())"
            )
            > 1.0
        ),
        what="the last replayed commit to age past the lag limit",
    )
    monitor = ReplicaMonitor(["replica_0"])
    monitor.check_now()
    state = monitor.state("replica_0")
    assert state.reachable
    assert state.lag_seconds == 0.0
    assert state.admitted(settings.REPLICA_MAX_LAG_SECONDS)


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_a_paused_replica_is_measured_behind(services, settings) -> None:
    from users.tests.factories import UserFactory

    monitor = ReplicaMonitor(["replica_0"])
    monitor.check_now()
    replica.pause_replay()
    try:
        UserFactory.create()
        replica.wait_until(
            lambda: probed_lag(monitor) > 0.3, what="the paused replica's lag to grow"
        )
    finally:
        replica.resume_replay()
    replica.wait_until(lambda: probed_lag(monitor) == 0.0, what="the resumed replica to catch up")


def probed_lag(monitor: ReplicaMonitor) -> float:
    monitor.check_now()
    return monitor.state("replica_0").lag_seconds


def test_a_stale_measure_stops_counting(settings) -> None:
    monitor = ReplicaMonitor(["replica_0"], background=False)  # the test states the measures
    fresh = ReplicaState(reachable=True, lag_seconds=0.0, checked_at=time.monotonic())
    monitor.record("replica_0", fresh)
    assert monitor.readable() == ["replica_0"]

    # The probe is stuck on a hung server: its last verdict ages past three intervals.
    stale_at = time.monotonic() - 4 * settings.REPLICA_CHECK_INTERVAL
    monitor.record("replica_0", ReplicaState(reachable=True, lag_seconds=0.0, checked_at=stale_at))
    assert monitor.readable() == []
