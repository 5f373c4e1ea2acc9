"""Logs an operator can use (issue 12, item 7).

`LOG_FORMAT=json` writes one JSON object per line: `time` (UTC, ISO 8601), `level`,
`logger`, `message`, `process`, plus `request_id` for every line logged while a
request is handled (set when Django's request_started signal fires, before any
middleware; operations.middleware.RequestIdMiddleware puts it on the response in
`X-Request-ID`), `task_id` for every line logged while a task runs (set from django-tasks' task_started and
task_finished signals), and `exception` (the traceback) when there is one.

Only the formatted message is written, never a record's arguments or extra
attributes: what reaches the log is what the code chose to put in its message.

This module is plain Python (no Django import at module level): gunicorn's master
process loads the formatter too (config/gunicorn.conf.py) before Django is set up.
"""

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime

LOG_FORMATS = ("plain", "json")

# The id of the request or task this code runs for, if any.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
task_id: ContextVar[str | None] = ContextVar("task_id", default=None)
# Tokens of task_id.set, innermost last: the immediate backend runs a task enqueued by
# a task inside it, and the outer one's id comes back when the inner one finishes.
_task_tokens: ContextVar[tuple] = ContextVar("task_tokens", default=())
# The same ids for the whole process, for the threads a request or task starts (the
# pool of concurrent Graph sends, a Test Connection's timeout): a new thread does not
# inherit context variables. `manage.py db_worker` runs one task at a time and a
# gunicorn sync worker (config/gunicorn.conf.py) one request at a time, so in them the
# process's current request or task is that thread's too.
_process = {"request_id": None, "task_id": None}

# gunicorn's access log line is written after the response, outside the request's
# context: its request id is the response's X-Request-ID header (a gunicorn "atom").
_ACCESS_LOG_REQUEST_ID = "{x-request-id}o"


class JsonFormatter(logging.Formatter):
    """One JSON object per line (json.dumps escapes newlines and control
    characters, so a message or traceback never spans lines)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        own_request, own_task = request_id.get(), task_id.get()
        if own_request or own_task:  # this thread's own
            current_request, current_task = own_request, own_task
        else:  # a thread started by a request or task, or none
            current_request, current_task = _process["request_id"], _process["task_id"]
        current_request = current_request or _access_log_request_id(record)
        if current_request:
            entry["request_id"] = current_request
        if current_task:
            entry["task_id"] = current_task
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def _access_log_request_id(record: logging.LogRecord) -> str | None:
    if record.name != "gunicorn.access" or not isinstance(record.args, dict):
        return None
    value = record.args.get(_ACCESS_LOG_REQUEST_ID)
    return value if isinstance(value, str) and value != "-" else None


def logging_config(log_format: str, level: str) -> dict:
    """settings.LOGGING for `log_format` ("plain" or "json") at `level`."""
    if log_format not in LOG_FORMATS:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}."
        )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
            "json": {"()": "config.logs.JsonFormatter"},
        },
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": log_format},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # msal logs request details at DEBUG; keep it quiet.
            "msal": {"level": "WARNING"},
            "urllib3": {"level": "WARNING"},
        },
    }


# -- request and task ids: Django's and django-tasks' signals ---------------------
# (connected by operations.apps)

# An X-Request-ID sent by the client or a proxy in front is kept when it is sane;
# anything else is replaced by a new id, so nothing else the client chose reaches the
# logs.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def incoming_or_new_request_id(value: str | None) -> str:
    if value and _SANE_REQUEST_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


def request_started(sender, environ=None, **kwargs) -> None:
    """Before anything of the request runs, middleware included: Django logs its
    "Not Found" and "Internal Server Error" lines after the middleware returned."""
    incoming = environ.get("HTTP_X_REQUEST_ID") if environ else None
    _process["request_id"] = current = incoming_or_new_request_id(incoming)
    request_id.set(current)


def request_finished(sender, **kwargs) -> None:
    _process["request_id"] = None
    request_id.set(None)


def task_started(sender, task_result, **kwargs) -> None:
    current = str(task_result.id)
    token = task_id.set(current)
    _task_tokens.set((*_task_tokens.get(), (current, token, _process["task_id"])))
    _process["task_id"] = current


def task_finished(sender, task_result, **kwargs) -> None:
    tokens = _task_tokens.get()
    if not tokens or tokens[-1][0] != str(task_result.id):
        return  # finished without having started here (a worker's failure path)
    _current, token, outer = tokens[-1]
    task_id.reset(token)
    _task_tokens.set(tokens[:-1])
    _process["task_id"] = outer


def connect_signals() -> None:
    """Set request_id for the lines of each request and task_id for those of each
    task run. On a task's start ours runs before django-tasks' own "Task id=...
    state=RUNNING" line, and on its finish after the "state=SUCCESSFUL" (or FAILED,
    with the traceback) line, so those carry the task id too."""
    from django.core import signals as django_signals
    from django_tasks import signals

    django_signals.request_started.connect(
        request_started, dispatch_uid="config.logs.request_started"
    )
    django_signals.request_finished.connect(
        request_finished, dispatch_uid="config.logs.request_finished"
    )
    signals.task_started.disconnect(signals.log_task_started)
    signals.task_started.connect(task_started, dispatch_uid="config.logs.task_started")
    signals.task_started.connect(signals.log_task_started)
    signals.task_finished.connect(
        task_finished, dispatch_uid="config.logs.task_finished"
    )
