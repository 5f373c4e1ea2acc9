"""`manage.py run_periodic`: run, list or book the periodic jobs."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from operations import periodic


class Command(BaseCommand):
    help = (
        "Run every due periodic job once, in this process (for cron), or run one "
        "now (--job), list them (--list), or book them on the task worker (--book, "
        "run once when a worker starts)."
    )

    def add_arguments(self, parser):
        action = parser.add_mutually_exclusive_group()
        action.add_argument(
            "--once",
            action="store_true",
            help="Run every due job once, then exit (the default).",
        )
        action.add_argument(
            "--job",
            metavar="NAME",
            action="append",
            help="Run this job now, due or not (repeatable).",
        )
        action.add_argument(
            "--list", action="store_true", help="Print the jobs with last/next run."
        )
        action.add_argument(
            "--book",
            action="store_true",
            help="Book each job on the task worker unless it is booked already.",
        )

    def handle(self, *args, **options):
        if options["list"]:
            return self._list()
        if options["book"]:
            if not periodic.can_book():
                raise CommandError(
                    "The task backend cannot delay tasks (TASKS_BACKEND): run "
                    "`manage.py run_periodic` from cron instead."
                )
            booked = periodic.ensure_booked()
            self.stdout.write(
                f"Booked: {', '.join(booked)}." if booked else "All jobs were booked."
            )
            return
        names = options["job"]
        if names:
            known = periodic.registered()
            unknown = [name for name in names if name not in known]
            if unknown:
                raise CommandError(
                    f"No periodic job named {', '.join(map(repr, unknown))}; "
                    f"`--list` shows them."
                )
        failed = False
        for outcome in periodic.run_due(names, force=bool(names)):
            line = f"{outcome['job']}: {outcome['outcome']}"
            if outcome["outcome"] == "failed":
                failed = True
                line += f" ({outcome['error']})"
            self.stdout.write(line)
        if failed:
            raise CommandError("A periodic job failed (see above).")

    def _list(self):
        def when(value):
            return (
                timezone.localtime(value).isoformat(timespec="seconds")
                if value
                else "-"
            )

        for job in periodic.jobs():
            state = "off" if not job.enabled else ("running" if job.running else "")
            self.stdout.write(
                f"{job.name}\tevery {job.interval_seconds:g}s\t"
                f"last {when(job.last_started_at)}\tnext {when(job.next_run_at)}\t"
                f"runs {job.runs}\tfailures {job.failures}"
                + (f"\t{state}" if state else "")
                + (f"\tlast error: {job.last_error}" if job.last_error else "")
            )
