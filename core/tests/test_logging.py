"""core.observability.logging: one formatter for every logger, credentials never rendered."""

import logging

import pytest
import structlog

from core.observability.logging import REDACTED, logging_config, make_formatter, redact, redact_text


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer 9f8e7d6c5b4a", "9f8e7d6c5b4a"),
        ("authorization: basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("GET /login?email=a@b.c&password=hunter2-secret&x=1", "hunter2-secret"),
        ("{'password': 'two words', 'email': 'a@b.c'}", "two words"),
        ('{"current_password": "s3cr3t!", "x": 1}', "s3cr3t!"),
        ("token=abc123def; path=/", "abc123def"),
        ("METRICS_TOKEN: scrape-me", "scrape-me"),
        ("postgres://app:db-pass-77@db.internal:5432/users", "db-pass-77"),
        ("api_key=k-123", "k-123"),
    ],
)
def test_redact_text_removes_credentials(text: str, secret: str) -> None:
    redacted = redact_text(text)
    assert secret not in redacted
    assert REDACTED in redacted


def test_redact_text_keeps_ordinary_text() -> None:
    text = "GET /api/v1/users/me/ 200 in 3 ms for ann@example.com"
    assert redact_text(text) == text


def test_redact_processor_drops_sensitive_keys_at_any_depth() -> None:
    event = {
        "event": "login",
        "password": "hunter2",
        "headers": {"Authorization": "Bearer abc", "Accept": "application/json"},
        "items": [{"api_token": "t-1"}, "note"],
        "attempts": 3,
    }
    assert redact(None, "info", event) == {
        "event": "login",
        "password": REDACTED,
        "headers": {"Authorization": REDACTED, "Accept": "application/json"},
        "items": [{"api_token": REDACTED}, "note"],
        "attempts": 3,
    }


def test_stdlib_and_structlog_lines_share_fields_and_context(log_output) -> None:
    structlog.contextvars.bind_contextvars(request_id="req-1")
    try:
        logging.getLogger("some.library").warning("disk at %d%%", 91)
        structlog.get_logger("ours").info("thing happened", count=2)
    finally:
        structlog.contextvars.clear_contextvars()
    library, ours = log_output.lines()
    assert library["event"] == "disk at 91%"
    assert library["level"] == "warning"
    assert library["logger"] == "some.library"
    assert ours["event"] == "thing happened"
    assert ours["level"] == "info"
    assert ours["logger"] == "ours"
    assert ours["count"] == 2
    for line in (library, ours):
        assert line["request_id"] == "req-1"
        assert line["time"].endswith("Z")


def test_exceptions_are_rendered_without_locals_or_credentials(log_output) -> None:
    password = "locals-must-not-leak-77"  # noqa: F841 (a local the traceback must not show)
    try:
        raise ValueError("rejected password=in-the-message-99")
    except ValueError:
        logging.getLogger("some.library").exception("failed")
    (line,) = log_output.lines()
    assert "ValueError: rejected password=[REDACTED]" in line["exception"]
    assert "in-the-message-99" not in log_output.text()
    assert "locals-must-not-leak-77" not in log_output.text()


def test_console_format_is_readable_text() -> None:
    formatter = make_formatter(log_format="console")
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "user %s signed up", ("42",), None)
    rendered = formatter.format(record)
    assert not rendered.startswith("{")
    assert "user 42 signed up" in rendered
    assert "[app]" in rendered


def test_logging_config_routes_django_through_the_one_handler() -> None:
    config = logging_config(level="WARNING", log_format="json")
    assert config["root"] == {"handlers": ["console"], "level": "WARNING"}
    assert config["loggers"]["django"]["handlers"] == ["console"]
    assert config["formatters"]["structured"]["log_format"] == "json"
