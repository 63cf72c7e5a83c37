"""structlog JSON logs with context (correlation id, event id, stream) bound per request and per
message. Personal data never reaches a log line: the redaction processor blanks known keys."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

#: Keys whose values are personal data (DESIGN §6): never written to logs. Members and the
#: Party-member guides of the roster (`guide.registered`: name, phone) alike.
PERSONAL_KEYS = frozenset(
    {"student_number", "name", "phone", "email", "dormitory", "bed", "authorization", "token"}
)
REDACTED = "[redacted]"


def _redacted(value: Any) -> Any:
    """`value` with every personal key blanked, however deep (an event's data logged whole)."""
    if isinstance(value, Mapping):
        return {k: REDACTED if k in PERSONAL_KEYS else _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_redacted(v) for v in value)
    return value


def redact_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():
        if key in PERSONAL_KEYS:
            event_dict[key] = REDACTED
        elif isinstance(value, Mapping | list | tuple):
            event_dict[key] = _redacted(value)
    return event_dict


def configure_logging(level: str = "INFO", fmt: str = "json", stream: TextIO = sys.stdout) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_personal_data,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    # Libraries that log through the standard library (uvicorn, faststream) go the same way.
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
