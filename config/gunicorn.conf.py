"""gunicorn's settings for the web process (issue 12, item 1):

    gunicorn -c config/gunicorn.conf.py config.wsgi

Read from the environment, like the product's settings: WEB_CONCURRENCY (worker
processes, default 2), PORT (default 8000; the server listens on 0.0.0.0:PORT),
LOG_FORMAT (plain or json, as the product's own lines). gunicorn reads its own
FORWARDED_ALLOW_IPS and GUNICORN_CMD_ARGS too (options on GUNICORN_CMD_ARGS and the
command line win over this file). README.md, "Production", explains them.
"""

import os
import sys


def _int_from_env(name: str, default: int, lowest: int, highest: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not lowest <= value <= highest:
        sys.exit(
            f"{name} must be a whole number from {lowest} to {highest}, not {raw!r}."
        )
    return value


# -- the server --------------------------------------------------------------------
bind = [f"0.0.0.0:{_int_from_env('PORT', 8000, 1, 65535)}"]
# Synchronous workers, one request at a time each. Two are enough for a few dozen
# users; add workers (and CPU) rather than threads: the product's sends and imports
# run in `manage.py db_worker`, so requests are short.
workers = _int_from_env("WEB_CONCURRENCY", 2, 1, 64)
# A request taking longer than this is killed with its worker (an upload of
# SARIF_MAX_BYTES over a slow link is the longest legitimate one).
timeout = 120
# On SIGTERM (a deploy, systemd stop), requests under way get this long to finish.
graceful_timeout = 30
keepalive = 5
# No preload: each worker imports the product itself. It costs some memory, but a
# SIGHUP then reloads new code without a restart, and no database connection, cache
# client or metrics state can be made in the master and shared by forked workers.
preload_app = False
# No control socket (gunicornc, gunicorn 25.1+): its default path is one per user
# ($HOME/.gunicorn/gunicorn.ctl), so a second instance on the host would take it
# over, and the service files' read-only home could refuse it. Signals do the same:
# HUP reloads, TTIN/TTOU add or remove a worker, TERM stops gracefully.
control_socket_disable = True
# Proxy headers (X-Forwarded-Proto, X-Forwarded-For) are believed only from the
# addresses in FORWARDED_ALLOW_IPS (gunicorn's own variable; default 127.0.0.1,::1:
# a reverse proxy on the same host). Behind a proxy on another host, set it to that
# proxy's address. The product itself decides https from SECURE_PROXY_SSL_HEADER and
# client addresses from SIGN_IN_TRUSTED_PROXY_COUNT (README.md, "Configuration").
#   forwarded_allow_ips = "10.0.0.5"   # example; leave unset to use the variable

# -- logs --------------------------------------------------------------------------
# Access log on stdout, gunicorn's own messages on stderr (the product's lines go to
# stderr as well, settings.LOGGING). The path only, never the query string: an OAuth
# callback's query carries an authorization code. The request id is the response's
# X-Request-ID (operations/middleware.py), the same as on the product's lines.
accesslog = "-"
errorlog = "-"
access_log_format = (
    '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms request_id=%({x-request-id}o)s'
)
if os.environ.get("LOG_FORMAT", "plain").strip().lower() == "json":
    # The same JSON lines as the product's (config/logs.py); the access log's
    # request_id comes from the response header.
    _json_handler = {"class": "logging.StreamHandler", "formatter": "json"}
    logconfig_dict = {
        "formatters": {"json": {"()": "config.logs.JsonFormatter"}},
        "handlers": {
            "access": {**_json_handler, "stream": "ext://sys.stdout"},
            "error": {**_json_handler, "stream": "ext://sys.stderr"},
            "console": {**_json_handler, "stream": "ext://sys.stderr"},
        },
        "root": {"level": "INFO", "handlers": ["console"]},
        "loggers": {
            # propagate off: the product's settings.LOGGING gives the root logger a
            # handler of its own in each worker, which would write every line twice.
            "gunicorn.error": {
                "level": "INFO",
                "handlers": ["error"],
                "propagate": False,
                "qualname": "gunicorn.error",
            },
            "gunicorn.access": {
                "level": "INFO",
                "handlers": ["access"],
                "propagate": False,
                "qualname": "gunicorn.access",
            },
        },
    }


# -- hooks -------------------------------------------------------------------------
def child_exit(server, worker):
    """Called in the master when a worker process has exited (killed, restarted
    after `max_requests`, or stopped at shutdown).

    Metrics (issue 12, item 4, operations/metrics.py): with prometheus-client in
    multiprocess mode (PROMETHEUS_MULTIPROC_DIR), the dead worker's live gauges are
    dropped; its counters stay in the directory, still added up by /metrics.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
