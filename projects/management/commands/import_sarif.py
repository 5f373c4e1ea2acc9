"""manage.py import_sarif <project-slug> <file> [--category NAME]: import a SARIF
2.1.0 report, showing the results read so far when stderr is a terminal.

Every failure is one line on stderr and exit status 2."""

import sys
import time

from django.core.management.base import BaseCommand, CommandError

from projects.exceptions import ProjectError
from projects.models import Project, ScanSource
from projects.services import scan_import

EXIT_FAILURE = 2
# The progress line is redrawn at most this often (seconds).
REDRAW_EVERY = 0.1


def _failure(message: str) -> CommandError:
    return CommandError(" ".join(str(message).split()), returncode=EXIT_FAILURE)


def _plain(text: str) -> str:
    return text


class Progress:
    """`Importing <file>: 12,000 results` on one line of a terminal, redrawn as the
    import reads the file, and erased when it is over."""

    def __init__(self, stream, label: str):
        self.stream = stream
        self.label = label
        self.drawn_at = 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self.drawn_at < REDRAW_EVERY:
            return
        self.drawn_at = now
        self.stream.write(
            f"\r{self.label}: {done:,} results\x1b[K", style_func=_plain, ending=""
        )
        self.stream.flush()

    def clear(self) -> None:
        if self.drawn_at:
            self.stream.write("\r\x1b[K", style_func=_plain, ending="")
            self.stream.flush()


class Command(BaseCommand):
    help = (
        "Import a SARIF 2.1.0 file (e.g. from `bandit -r . -f sarif`) into a project."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", help="the project's slug")
        parser.add_argument("file", help="path to the SARIF file, or - for stdin")
        parser.add_argument(
            "--category",
            default="",
            help=(
                "the analysis category, as GitHub code scanning's (e.g. "
                "codeql-javascript): the scan replaces only the earlier results of "
                "its tool and category. Default: each run's automationDetails.id."
            ),
        )

    def handle(self, *args, project, file, category, **options):
        try:
            target = Project.objects.get(slug=project)
        except Project.DoesNotExist:
            known = list(
                Project.objects.order_by("slug").values_list("slug", flat=True)[:10]
            )
            hint = (
                f" Known projects: {', '.join(known)}."
                if known
                else " There are no projects yet; create one in the app first."
            )
            raise _failure(f"No project with the slug “{project}”.{hint}") from None
        progress = None
        if self.stderr.isatty():
            progress = Progress(self.stderr, f"Importing {file}")
        try:
            if file == "-":
                scan = self._import(target, sys.stdin.buffer, category, progress)
            else:
                with open(file, "rb") as handle:
                    scan = self._import(target, handle, category, progress)
        except FileNotFoundError:
            raise _failure(f"No such file: {file}") from None
        except IsADirectoryError:
            raise _failure(
                f"{file} is a directory; give the SARIF file itself."
            ) from None
        except PermissionError:
            raise _failure(f"Cannot read {file}: permission denied.") from None
        except ProjectError as exc:
            raise _failure(f"{file}: {exc.message}") from None
        finally:
            if progress is not None:
                progress.clear()
        summary = (
            f"Imported scan #{scan.pk} ({scan.tool_name}"
            + (f", category {scan.category}" if scan.category else "")
            + f") into “{target.slug}”: {scan.new_count} new, "
            f"{scan.seen_again_count} seen again, {scan.resolved_count} resolved, "
            f"{scan.reopened_count} re-opened."
        )
        if scan.duplicate_count:
            summary += f" {scan.duplicate_count} identical results were counted once."
        self.stdout.write(self.style.SUCCESS(summary))
        if scan.incomplete:
            self.stderr.write(
                self.style.WARNING(
                    "A run failed or sent no results: its tool and category resolved "
                    "no findings."
                    + "".join(
                        f"\n  {note['tool']}: {note['message']}"
                        for note in scan.tool_notifications
                    )
                )
            )

    def _import(self, project, handle, category, progress):
        return scan_import(
            project=project,
            sarif=handle,
            source=ScanSource.COMMAND,
            category=category,
            progress=progress,
        )
