"""Log lines: JSON (one object per line) for machines, readable text on a terminal.

Every line carries the service; `line`, `camera` and `frame_id` come from `extra=` or from
`log_context(...)` around the work on one frame, e.g.

    with log_context(frame_id=ctx.frame_id, line=src.line, camera=src.camera):
        log.warning("tile chunk without tiles")

gives {"ts": ..., "level": "WARNING", "service": "inference", "line": "line-1",
"camera": "cam-1-1", "frame_id": "...", "message": "tile chunk without tiles"}.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator

FIELDS = ("line", "camera", "frame_id", "topic", "partition", "offset", "reason")
_context: contextvars.ContextVar[dict[str, object] | None] = contextvars.ContextVar(
    "defectflow_log_context", default=None
)


@contextlib.contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Fields added to every log line written inside the block (this thread/task only)."""
    token = _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _context.reset(token)


def _fields(record: logging.LogRecord) -> dict[str, object]:
    out: dict[str, object] = dict(_context.get() or {})
    for key in FIELDS:
        value = getattr(record, key, None)
        if value not in (None, ""):
            out[key] = value
    return {k: out[k] for k in FIELDS if k in out}


def _timestamp(record: logging.LogRecord) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z"
    )


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "service": self.service,
            **_fields(record),
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class HumanFormatter(logging.Formatter):
    """`12:01:02 WARNING inference line-1/cam-1-1 frame 0f3c..: message` for a terminal."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        f = _fields(record)
        where = "/".join(str(f[k]) for k in ("line", "camera") if k in f)
        parts = [time.strftime("%H:%M:%S", time.localtime(record.created)), record.levelname]
        parts.append(self.service)
        if where:
            parts.append(where)
        if "frame_id" in f:
            parts.append(f"frame {f['frame_id']}")
        rest = " ".join(f"{k}={f[k]}" for k in FIELDS[3:] if k in f)
        text = " ".join(parts) + ": " + record.getMessage() + (f" ({rest})" if rest else "")
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging(service: str, level: str = "INFO", human: bool | None = None) -> logging.Logger:
    """Root logging to stderr: JSON lines, or readable text when stderr is a terminal
    (`human` forces one or the other)."""
    if human is None:
        human = sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(HumanFormatter(service) if human else JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    return logging.getLogger(f"defectflow.{service}")
