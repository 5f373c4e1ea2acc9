"""`manage.py db_worker`: django-tasks-db's worker, warmed up before its first task.

The same command, options and behaviour (this app is listed before
django_tasks_db, so its command takes the name); before the worker polls for
tasks it loads what the first email would otherwise load inside the first
delivery run (`warm_up`).
"""

from django.conf import settings
from django.template.loader import get_template
from django.urls import get_resolver
from django_tasks_db.management.commands.db_worker import Command as WorkerCommand

from integrations import registry
from integrations.providers import identity
from notifications import emails


def warm_up() -> None:
    """Do once, when the worker starts, what its first email would do: load the URL
    configuration and the index `reverse` uses (every view module with them),
    compile the email templates and the sections they include, build the provider
    registry, import the sending path and parse the CA bundle its token requests
    verify against. A worker runs for days; without this its first batch waits
    about half a second more than the others."""
    import notifications.tasks  # noqa: F401  # the delivery task and what it sends with

    # The index is built per language: the default one here, as most emails are.
    get_resolver().reverse_dict  # noqa: B018  # building it is the point
    for name in (
        emails.TEXT_TEMPLATE,
        emails.HTML_TEMPLATE,
        *emails.SECTION_TEMPLATES,
        emails.TOOL_HEALTH_TEXT_TEMPLATE,
        emails.TOOL_HEALTH_HTML_TEMPLATE,
    ):
        get_template(name)
    registry.providers()
    # The CA bundle the token requests verify against, parsed once here.
    identity.shared_session().load_trust(settings.M365_AUTHORITY_HOST)


class Command(WorkerCommand):
    help = WorkerCommand.help

    def handle(self, *args, **options):
        warm_up()
        return super().handle(*args, **options)
