"""Structured logs: every log line, ours or a library's, goes through one structlog formatter.

Production renders one JSON object a line; `make run` (LOG_FORMAT=console) renders the same
fields as readable key=value text. Context bound with `structlog.contextvars` (the request
id, method, path and client IP of the request being served, or the task being run) is added
to every line, whichever logger wrote it.

Secrets never reach the output: `redact` runs last before rendering, on the event and on
tracebacks already turned into text. Tracebacks are rendered by `format_exc_info`, which
prints source lines but never local variables.
"""

import logging
import re
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[REDACTED]"

# Keys whose values are credentials, wherever they appear in an event (nested too).
_SENSITIVE_KEY = re.compile(
    r"passw(or)?d|passphrase|token|secret|authori[sz]ation|api[-_]?key|cookie|session|csrf|credential",
    re.IGNORECASE,
)
# Credentials inside free text: exception messages, tracebacks, library messages.
_SENSITIVE_TEXT = [
    # `Authorization: Bearer abc`, `Basic abc`: the scheme stays, the credential goes.
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE), r"\1 " + REDACTED),
    # password=..., "token": "...", secret: ..., in query strings, reprs and JSON alike.
    (
        re.compile(
            r"""((?:passw(?:or)?d|passphrase|token|secret|authori[sz]ation|api[-_]?key|csrf|sessionid)"""
            r"""\w*["']?\s*[:=]\s*)("[^"]*"|'[^']*'|[^"'&\s,;}\]]+)""",
            re.IGNORECASE,
        ),
        r"\1" + REDACTED,
    ),
    # URLs with credentials: postgres://user:password@host.
    (
        re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@", re.IGNORECASE),
        r"\1" + REDACTED + "@",
    ),
]


# Every pattern above needs one of these words (or a URL scheme): one search of a clean
# string, the common case, instead of one substitution a pattern.
_MAYBE_SENSITIVE = re.compile(
    r"bearer|basic|passw|passphrase|token|secret|authori[sz]ation|api[-_]?key|csrf|sessionid|://",
    re.IGNORECASE,
)


def redact_text(text: str) -> str:
    """`text` with every credential-looking value replaced by [REDACTED]."""
    if not _MAYBE_SENSITIVE.search(text):
        return text
    for pattern, replacement in _SENSITIVE_TEXT:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(key: str, value: Any) -> Any:
    if _SENSITIVE_KEY.search(key):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, item) for item in value]
    return value


def redact(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: drop credentials from every key and every string of the event."""
    return {key: _redact_value(key, value) for key, value in event_dict.items()}


def _shared_processors() -> list[Processor]:
    # What both our own (structlog) and foreign (stdlib) records get before rendering.
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
    ]


def _leading_keys(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    # JSON keeps key order: time, level, logger and event first read best in a terminal.
    lead = ("time", "level", "logger", "event")
    return {
        **{key: event_dict[key] for key in lead if key in event_dict},
        **{key: value for key, value in event_dict.items() if key not in lead},
    }


def _renderer(log_format: str) -> Processor:
    if log_format == "console":
        return structlog.dev.ConsoleRenderer(timestamp_key="time", colors=False)
    return structlog.processors.JSONRenderer()


def make_formatter(*, log_format: str) -> logging.Formatter:
    """The formatter of every handler: structlog's processors, then JSON or console text."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            _leading_keys,
            _renderer(log_format),
        ],
    )


def logging_config(*, level: str, log_format: str) -> dict[str, Any]:
    """The LOGGING dict: one stderr handler, one structlog formatter, for every logger.

    `log_format` is "json" (one object a line) or "console" (readable, for development).
    """
    formatter = {"()": "core.observability.logging.make_formatter", "log_format": log_format}
    handler = {"class": "logging.StreamHandler", "formatter": "structured"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": formatter},
        "handlers": {"console": handler},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django's own handlers would print records a second time, unformatted.
            "django": {"handlers": ["console"], "level": level, "propagate": False},
            # runserver's access lines duplicate core.observability.request_logging's; keep
            # its errors.
            "django.server": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        },
    }


def configure_structlog() -> None:
    """Send structlog's loggers through the stdlib handlers that `logging_config` sets up."""
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
