"""Send every due delivery: the recovery path when a worker died or an enqueue was lost.

Run it from cron every minute, or keep it running with --loop next to db_worker.
"""

import logging
import time

from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections

from notifications.services import deliveries_send


class Command(BaseCommand):
    help = (
        "Send deliveries that are due and not claimed (or whose worker's lease "
        "expired), one connection per notification tool."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--loop",
            action="store_true",
            help="Keep running, looking for due deliveries every --interval seconds.",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=15.0,
            help="Seconds between looks with --loop (default: %(default)s).",
        )
        parser.add_argument(
            "--max",
            type=int,
            default=None,
            dest="max_deliveries",
            help="Stop after this many deliveries (default: all that are due).",
        )

    def handle(self, *, loop, interval, max_deliveries, verbosity, **options):
        while True:
            if not loop:
                summary = deliveries_send(max_deliveries=max_deliveries)
            else:
                close_old_connections()
                try:
                    summary = deliveries_send(max_deliveries=max_deliveries)
                except DatabaseError:
                    # A locked SQLite file or a restarting database: try next time.
                    logging.getLogger(__name__).exception("deliver_pending pass failed")
                    time.sleep(interval)
                    continue
            if verbosity and (summary.processed or not loop):
                self.stdout.write(
                    f"sent {summary.sent}, failed {summary.failed}, "
                    f"not sent {summary.skipped}, retrying {summary.retrying}"
                )
            if not loop:
                return
            time.sleep(interval)
