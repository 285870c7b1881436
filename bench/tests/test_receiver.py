"""bench.receiver: what the webhook receiver notes of each arrival."""

from bench.receiver import Arrivals


def test_an_event_has_arrived_once_every_subscriber_has_it_first_time_kept() -> None:
    arrivals = Arrivals()
    arrivals.note("event", "/hook/0", 10.0)
    assert arrivals.get("event", subscribers=2) is None
    arrivals.note("event", "/hook/1", 12.0)
    arrivals.note("event", "/hook/0", 15.0)

    assert arrivals.get("event", subscribers=2) == 12.0


def test_a_second_request_for_an_event_at_the_same_path_is_a_repeat() -> None:
    arrivals = Arrivals()
    arrivals.note("event", "/hook/0", 10.0)
    arrivals.note("event", "/hook/1", 10.5)
    assert arrivals.repeats("event") == 0

    arrivals.note("event", "/hook/0", 11.0)
    arrivals.note("event", "/hook/0", 12.0)

    assert arrivals.repeats("event") == 2
    assert arrivals.repeats("other") == 0
