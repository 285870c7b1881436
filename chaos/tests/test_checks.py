"""chaos.checks: which second copy of a webhook a fault explains (pure logic)."""

from chaos.checks import GRACE_SECONDS, Window, interrupted_delivery


def windows() -> list[Window]:
    return [
        Window("redis_killed", "all 2xx", injected=10.0, restored=19.0, recovered=19.5),
        Window("worker_killed", "all 2xx", injected=40.0, restored=49.0, recovered=49.5),
        Window("primary_restarted", "503", injected=60.0, restored=69.0, recovered=70.0),
    ]


def test_a_copy_first_received_while_a_delivery_could_be_cut_short_is_explained() -> None:
    assert interrupted_delivery(45.0, windows()) == "worker_killed"
    assert interrupted_delivery(70.0 + GRACE_SECONDS, windows()) == "primary_restarted"
    assert interrupted_delivery(60.0 - GRACE_SECONDS, windows()) == "primary_restarted"


def test_any_other_copy_is_not() -> None:
    assert interrupted_delivery(15.0, windows()) is None  # Redis cannot cut a delivery short
    assert interrupted_delivery(30.0, windows()) is None  # no fault at all
    assert interrupted_delivery(None, windows()) is None
