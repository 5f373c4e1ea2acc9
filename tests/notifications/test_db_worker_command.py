"""`manage.py db_worker` is django-tasks-db's worker, warmed up before its first task
(`notifications/management/commands/db_worker.py`)."""

from django.core.management import get_commands, load_command_class
from django.template import engines
from django.urls import clear_url_caches, get_resolver
from django.utils.translation import get_language
from django_tasks_db.management.commands.db_worker import Command as WorkerCommand

from integrations import registry
from integrations.providers import http, identity
from notifications.emails import HTML_TEMPLATE, SECTION_TEMPLATES, TEXT_TEMPLATE
from notifications.management.commands.db_worker import warm_up

from ..integrations.providers.test_send_mail_transport import app_token


def test_db_worker_is_the_products_command_built_on_django_tasks_db():
    assert get_commands()["db_worker"] == "notifications"
    command = load_command_class("notifications", "db_worker")
    assert isinstance(command, WorkerCommand)
    # The same options as django-tasks-db's own.
    options = {a.dest for a in command.create_parser("manage.py", "db_worker")._actions}
    assert {"queue_name", "interval", "worker_id", "max_tasks"} <= options


def test_warm_up_loads_what_the_first_email_would_load():
    clear_url_caches()
    assert "url_patterns" not in get_resolver().__dict__
    email_engine = engines["email"].env
    email_engine.cache.clear()
    registry._build.cache_clear()

    warm_up()

    resolver = get_resolver()
    assert "url_patterns" in resolver.__dict__
    # The index `reverse` uses (built per language), not only the patterns.
    assert get_language() in resolver._reverse_dict
    cached = {name for (_loader, name) in email_engine.cache}
    # The sections the messages include are compiled too.
    assert {TEXT_TEMPLATE, HTML_TEMPLATE, *SECTION_TEMPLATES} <= cached
    assert registry._build.cache_info().currsize == 1


def test_a_worker_parses_the_ca_bundle_before_its_first_token_request(
    sandbox, monkeypatch
):
    # As in a new worker process: nothing parsed, no msal application, no
    # connection yet.
    fresh_trust = http._trust_context
    fresh_trust.cache_clear()
    monkeypatch.setattr(identity, "_session", None)
    identity.forget_apps()

    warm_up()
    assert fresh_trust.cache_info().misses == 1
    looked_up = fresh_trust.cache_info().hits

    assert app_token(sandbox)

    # The token request's new connection (tenant discovery, then the token
    # endpoint) used the parsed bundle and parsed nothing more.
    assert fresh_trust.cache_info().misses == 1
    assert fresh_trust.cache_info().hits > looked_up
