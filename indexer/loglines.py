"""Log lines: one per event, as text or as JSON (`LOG_FORMAT`), with what they concern.

Every process configures the root logger once at start (`configure`); libraries log as
usual. What a line concerns travels as fields: `chain` (the chain's name, `main` without
a chains file), `block` (and `last_block` for a range),
`job` (a Celery task id), `client` (a Socket.IO session id), `token`. They come either
from `extra={...}` at the call or from `context(...)`, which sets them for everything
logged inside it (a job's lines all carry its id and heights; it works per thread and
per green thread, being a context variable).

JSON lines have `time` (ISO 8601, UTC), `level`, `logger`, `message`,
the fields above where they apply, and `exc` with the traceback. Text lines end with
the fields as `key=value`.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import sys
from collections.abc import Iterator
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter

from indexer.errors import ConfigError

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
FIELDS = ("chain", "block", "last_block", "job", "client", "token")

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "log_context", default=None
)


def log_format(raw: str) -> str:
    """`LOG_FORMAT` checked: text or json."""
    word = raw.strip().lower()
    if word not in FORMATS:
        raise ConfigError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, got {raw!r}")
    return word


def log_level(raw: str) -> str:
    """`LOG_LEVEL` checked."""
    word = raw.strip().lower()
    if word not in LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LEVELS)}, got {raw!r}")
    return word


@contextlib.contextmanager
def context(**fields: Any) -> Iterator[None]:
    """Attach `fields` (None values left out) to every line logged inside."""
    token = _context.set(
        {**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    )
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copies the current `context` onto each record (an `extra` at the call wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


# Characters a message may not carry as they are: control characters (a newline would
# start a forged line of its own, escape sequences would drive a terminal) and Unicode's
# line and paragraph separators.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape(text: str) -> str:
    """`text` with unprintable characters as escapes (`\\n`, `\\x1b`): one log line
    stays one line, whatever a client managed to get into it."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


class TextFormatter(logging.Formatter):
    """`time level logger message key=value…`; the message escaped (`escape`), a
    traceback after it as it is."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's)
        record.message = escape(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [f"{key}={getattr(record, key)}" for key in FIELDS if hasattr(record, key)]
        if not fields:
            return line
        head, sep, rest = line.partition("\n")  # fields before any traceback
        return f"{head} {' '.join(fields)}{sep}{rest}"


def json_formatter() -> logging.Formatter:
    # everything else a record carries (an `extra=...` at the call) becomes a field too
    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        timestamp="time",
        rename_fields={"levelname": "level", "name": "logger", "exc_info": "exc"},
        json_ensure_ascii=False,
    )


def formatter(fmt: str) -> logging.Formatter:
    return json_formatter() if fmt == "json" else TextFormatter()


def configure(fmt: str = "text", level: str = "info", stream: IO[str] | None = None) -> None:
    """Route every logger through one handler on the root, in `fmt` (text or json)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # warnings are log lines too (logger `py.warnings`)
