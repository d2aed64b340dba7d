"""Logging for the pod's entry point: the level and the line format from the pod's environment.

The library itself only logs to its loggers (``houseparty``, ``py_nodes``), which carry a
``NullHandler``: configuring where lines go is the program's business, and this module is
the pod's way. ``HP_LOG_LEVEL`` is ``debug``, ``info`` (the default), ``notice``,
``warning`` or ``error``; ``HP_LOG_FORMAT`` is ``text`` (the default) or ``json``, one
object per line with ``time`` (RFC 3339, UTC), ``level``, ``message``, ``logger`` and the
record's own fields (those given as ``extra``), as the sidecar writes its own.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["LEVELS", "LOG_FORMATS", "NOTICE", "JsonFormatter", "configure_logging"]

# Between info and warning, as in syslog and Erlang's logger: what an operator wants to see
# without the chatter of info, such as the summary of a drain.
NOTICE = 25
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": NOTICE,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
LOG_FORMATS = ("text", "json")

# The attributes every LogRecord has; the others came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
            "logger": record.name,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def _choice(env: Mapping[str, str], name: str, default: str, choices: list[str]) -> str:
    value = env.get(name, default)
    if value.strip().lower() not in choices:
        raise SystemExit(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value.strip().lower()


def configure_logging(env: Mapping[str, str], stream: TextIO = sys.stderr) -> None:
    """Send every log record at ``HP_LOG_LEVEL`` or above to ``stream`` in
    ``HP_LOG_FORMAT``; SystemExit naming the variable for a value it does not know."""
    level = _choice(env, "HP_LOG_LEVEL", "info", list(LEVELS))
    fmt = _choice(env, "HP_LOG_FORMAT", "text", list(LOG_FORMATS))
    logging.addLevelName(NOTICE, "NOTICE")
    handler = logging.StreamHandler(stream)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=LEVELS[level], handlers=[handler], force=True)
