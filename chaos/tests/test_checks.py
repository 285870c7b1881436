"""chaos.checks: which second copy of a webhook or an email a fault explains (pure logic)."""

import os
from pathlib import Path

from chaos.checks import GRACE_SECONDS, Window, interrupted_delivery, welcome_emails


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


def _email(directory: Path, name: str, to: str, subject: str, written: float) -> None:
    path = directory / name
    path.write_text(f"Subject: {subject}\nTo: {to}\n\nHello\n" + "-" * 79 + "\n")
    os.utime(path, (written, written))


def test_welcome_emails_are_counted_with_the_first_send_of_each(tmp_path: Path) -> None:
    epoch = 1_000_000.0
    _email(tmp_path, "a.log", "ann@example.com", "Welcome", epoch + 42.0)
    _email(tmp_path, "b.log", "ann@example.com", "Welcome", epoch + 47.0)
    _email(tmp_path, "c.log", "bob@example.com", "Welcome", epoch + 5.0)
    _email(tmp_path, "d.log", "bob@example.com", "Your email", epoch + 6.0)

    counts, first_sent = welcome_emails(tmp_path, epoch=epoch)

    assert counts == {"ann@example.com": 2, "bob@example.com": 1}
    assert first_sent == {"ann@example.com": 42.0, "bob@example.com": 5.0}
    # Ann's second copy is explained only because her first fell inside a cutting fault.
    assert interrupted_delivery(first_sent["ann@example.com"], windows()) == "worker_killed"
