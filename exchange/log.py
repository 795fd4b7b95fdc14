"""Structured logging for every process.

Readable console lines on a terminal, JSON lines otherwise. The request id, the
caller's organisation and role are bound through contextvars by the gRPC edge.
Loggers are named per component (``samenloop.hub``, ``samenloop.keyservice``,
``samenloop.agent``...) so a process can route each to its own file.

Never log personal data: log ids, pseudonymous references, counts and field names.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import structlog

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def get(component: str) -> Any:
    """A structlog logger for ``samenloop.<component>``."""
    return structlog.get_logger(f"samenloop.{component}")


def _formatter(json: bool) -> logging.Formatter:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )


def configure(
    *,
    level: int = logging.INFO,
    json: bool | None = None,
    stream: Any = None,
    files: dict[str, Path] | None = None,
    console_level: int | None = None,
) -> None:
    """Configure logging for this process.

    ``json=None`` picks console output when the stream is a terminal and JSON otherwise.
    ``files`` routes components to their own JSON log file (e.g. ``{"hub": path}``);
    when given, nothing is written to the stream below ``console_level`` (WARNING).
    """
    stream = sys.stderr if stream is None else stream
    if json is None:
        json = not (hasattr(stream, "isatty") and stream.isatty())
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger("samenloop")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    root.propagate = False
    console = logging.StreamHandler(stream)
    console.setFormatter(_formatter(json))
    console.setLevel(console_level or (logging.WARNING if files else level))
    root.addHandler(console)
    for component, path in (files or {}).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(_formatter(True))
        handler.addFilter(logging.Filter(f"samenloop.{component}"))
        root.addHandler(handler)
