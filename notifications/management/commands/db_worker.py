"""`manage.py db_worker`: django-tasks-db's worker, warmed up before its first task.

The same command, options and behaviour (this app is listed before
django_tasks_db, so its command takes the name); before the worker polls for
tasks it loads what the first email would otherwise load inside the first
delivery run (`notifications.emails.warm_up`).
"""

from django_tasks_db.management.commands.db_worker import Command as WorkerCommand

from notifications.emails import warm_up


class Command(WorkerCommand):
    help = WorkerCommand.help

    def handle(self, *args, **options):
        warm_up()
        return super().handle(*args, **options)
