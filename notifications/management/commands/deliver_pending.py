"""Send every due delivery now: the manual (or cron) recovery tool.

db_worker recovers by itself: every delivery task books a `recover` task for when its
lease runs out, so a worker killed mid-batch, once restarted (or any other worker),
finishes the batch. This command covers what no task does: an enqueue lost after
commit with no delivery task since, or a backend that cannot delay tasks. Run it by
hand, from cron every few minutes, or with --loop.
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
                    f"not sent {summary.skipped}, retrying {summary.retrying}, "
                    f"waiting for the mailbox's budget {summary.deferred}"
                )
            if not loop:
                return
            time.sleep(interval)
