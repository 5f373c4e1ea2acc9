"""manage.py import_sarif <project-slug> <file>: import a SARIF 2.1.0 report."""

import sys

from django.core.management.base import BaseCommand, CommandError

from projects.exceptions import ProjectError
from projects.models import Project, ScanSource
from projects.services import scan_import


class Command(BaseCommand):
    help = (
        "Import a SARIF 2.1.0 file (e.g. from `bandit -r . -f sarif`) into a project."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", help="the project's slug")
        parser.add_argument("file", help="path to the SARIF file, or - for stdin")

    def handle(self, *args, project, file, **options):
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
            raise CommandError(f"No project with the slug “{project}”.{hint}") from None
        try:
            if file == "-":
                scan = self._import(target, sys.stdin.buffer)
            else:
                with open(file, "rb") as handle:
                    scan = self._import(target, handle)
        except FileNotFoundError:
            raise CommandError(f"No such file: {file}") from None
        except IsADirectoryError:
            raise CommandError(
                f"{file} is a directory; give the SARIF file itself."
            ) from None
        except PermissionError:
            raise CommandError(f"Cannot read {file}: permission denied.") from None
        except ProjectError as exc:
            raise CommandError(f"{file}: {exc.message}") from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported scan #{scan.pk} ({scan.tool_name}) into “{target.slug}”: "
                f"{scan.new_count} new, {scan.seen_again_count} seen again, "
                f"{scan.resolved_count} resolved, {scan.reopened_count} re-opened."
            )
        )

    def _import(self, project, handle):
        return scan_import(project=project, sarif=handle, source=ScanSource.COMMAND)
