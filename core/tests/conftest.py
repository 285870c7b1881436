"""Fixtures for core's tests."""

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog


class LogCapture:
    """What the configured log handlers wrote during a test."""

    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    def text(self) -> str:
        """Everything written, as rendered."""
        return self._stream.getvalue()

    def lines(self) -> list[dict]:
        """Each line parsed as JSON (every line must be JSON)."""
        return [json.loads(line) for line in self.text().splitlines() if line.strip()]

    def events(self, event: str) -> list[dict]:
        """The lines whose event is `event`."""
        return [line for line in self.lines() if line.get("event") == event]


@pytest.fixture
def log_output() -> Iterator[LogCapture]:
    """Capture what settings.LOGGING's handlers write, through their real formatter.

    Only the handlers' stream is swapped, so the test sees exactly what production would
    print; the level is lowered to DEBUG so nothing a library logs escapes the checks.
    """
    stream = io.StringIO()
    loggers = [logging.getLogger(), logging.getLogger("django")]
    handlers = {
        id(handler): handler
        for logger in loggers
        for handler in logger.handlers
        # pytest adds its own capturing handler; only ours render through structlog.
        if isinstance(handler, logging.StreamHandler)
        and isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter)
    }
    assert handlers, "settings.LOGGING configured no stream handler"
    previous_streams = {key: handler.setStream(stream) for key, handler in handlers.items()}
    previous_levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    yield LogCapture(stream)
    for key, handler in handlers.items():
        handler.setStream(previous_streams[key])
    for logger, level in zip(loggers, previous_levels, strict=True):
        logger.setLevel(level)
