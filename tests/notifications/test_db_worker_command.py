"""`manage.py db_worker` is django-tasks-db's worker, warmed up before its first task
(`notifications/management/commands/db_worker.py`)."""

from django.core.management import get_commands, load_command_class
from django.template import engines
from django.urls import clear_url_caches, get_resolver
from django_tasks_db.management.commands.db_worker import Command as WorkerCommand

from notifications.emails import HTML_TEMPLATE, TEXT_TEMPLATE
from notifications.management.commands.db_worker import warm_up


def test_db_worker_is_the_products_command_built_on_django_tasks_db():
    assert get_commands()["db_worker"] == "notifications"
    command = load_command_class("notifications", "db_worker")
    assert isinstance(command, WorkerCommand)
    # The same options as django-tasks-db's own.
    options = {a.dest for a in command.create_parser("manage.py", "db_worker")._actions}
    assert {"queue_name", "interval", "worker_id", "max_tasks"} <= options


def test_warm_up_loads_the_url_configuration_and_the_email_templates():
    clear_url_caches()
    assert "url_patterns" not in get_resolver().__dict__
    email_engine = engines["email"].env
    email_engine.cache.clear()

    warm_up()

    assert "url_patterns" in get_resolver().__dict__
    cached = {name for (_loader, name) in email_engine.cache}
    assert {TEXT_TEMPLATE, HTML_TEMPLATE} <= cached
