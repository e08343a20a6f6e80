"""The processes' log lines: one JSON object per line (LOG_FORMAT=json, production) or human-readable text.

Web, worker and consumer all build the app, so `configure` runs in each: the root logger
gets one stderr handler whose lines carry time, level, logger and message, plus what the
line's context knows — the request id (app/requestlog.py) and, on the relay's and the
consumer's lines, the event's id and type (`event_fields`, `event_context`). A request's
own line adds user_id, route, status and duration_ms. gunicorn's own lines use the same
JSON fields (gunicorn.conf.py).
"""

import contextlib
import contextvars
import logging
import sys

from pythonjsonlogger.json import JsonFormatter

# Fields a line's context adds (when known), in the order the text format prints them.
CONTEXT_FIELDS = ("request_id", "user_id", "route", "status", "duration_ms", "event_id", "event_type")
# The JSON line's names for logging's own attributes (gunicorn.conf.py uses the same).
RENAMED = {"levelname": "level", "name": "logger"}

request_id_var = contextvars.ContextVar("crm_request_id", default=None)
_event_var = contextvars.ContextVar("crm_event", default=None)


def event_fields(event_id, event_type):
    """`extra=` for a line about one event: its id and type as their own JSON fields."""
    return {"event_id": str(event_id) if event_id is not None else None, "event_type": event_type}


@contextlib.contextmanager
def event_context(event_id, event_type):
    """Every line logged inside (a reaction's, the database's) carries this event's id and type."""
    token = _event_var.set(event_fields(event_id, event_type))
    try:
        yield
    finally:
        _event_var.reset(token)


def current_event():
    """{"event_id", "event_type"} of the event being handled in this context (`event_context`), else None."""
    return _event_var.get()


class ContextFilter(logging.Filter):
    """Adds the request id and the current event to a record that does not carry them already."""

    def filter(self, record):
        """Always keeps the record; only adds attributes."""
        if getattr(record, "request_id", None) is None:
            rid = request_id_var.get()
            if rid is not None:
                record.request_id = rid
        event = _event_var.get()
        if event is not None and getattr(record, "event_id", None) is None:
            record.event_id, record.event_type = event["event_id"], event["event_type"]
        return True


class JsonLines(JsonFormatter):
    """python-json-logger's formatter: time (ISO 8601, UTC), level, logger, message, then the context fields set."""

    def __init__(self):
        super().__init__(["levelname", "name", "message"], rename_fields=RENAMED, timestamp="time", json_ensure_ascii=False)

    def process_log_record(self, log_data):
        """Time first; context fields that are None left out (a worker line has no request)."""
        ordered = {"time": log_data.pop("time", None)}
        ordered.update((k, v) for k, v in log_data.items() if v is not None or k not in CONTEXT_FIELDS)
        return ordered


class TextLines(logging.Formatter):
    """`time LEVEL logger [request_id=… event_type=…]: message` for a person reading a terminal."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s%(crm_context)s: %(message)s")

    def format(self, record):
        """The line, with the context fields the record carries in brackets."""
        shown = [f"{name}={getattr(record, name)}" for name in CONTEXT_FIELDS if getattr(record, name, None) is not None]
        record.crm_context = f" [{' '.join(shown)}]" if shown else ""
        return super().format(record)


def formatter(log_format):
    """The formatter LOG_FORMAT names: "json" or "text" (anything else is refused)."""
    chosen = (log_format or "").strip().lower()
    if chosen == "json":
        return JsonLines()
    if chosen == "text":
        return TextLines()
    raise RuntimeError(f"LOG_FORMAT must be json or text (got {log_format!r})")


def configure(config, stream=None):
    """Give the root logger this process's one handler (replacing the one an earlier app installed) at LOG_LEVEL."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(config["LOG_FORMAT"]))
    handler.addFilter(ContextFilter())
    handler.crm_handler = True
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "crm_handler", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config["LOG_LEVEL"])
    return handler
