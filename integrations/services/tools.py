"""Writes for notification tools: save, deactivate, test, validate and save.

Views call these with cleaned form data; nothing here reads a request."""

import dataclasses
import datetime
import logging
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from integrations.exceptions import AddressRefused, ConfigurationError, ConnectionFailed
from integrations.models import AuditAction, Integration, IntegrationState
from integrations.providers.base import TestReport
from integrations.providers.http import time_limit
from integrations.registry import get_provider_class
from integrations.selectors import integration_for
from integrations.services.audit import audit_record
from integrations.services.stores import IntegrationGrantStore

logger = logging.getLogger(__name__)


# Changing one of these makes cached tokens useless.
_CREDENTIAL_KEYS = {
    "tenant_id",
    "client_id",
    "cloud",
    "client_secret",
    "private_key",
    "certificate_thumbprint",
}


def _split(
    provider_cls, cleaned: dict, saved_secrets: dict, *, keep_transient: bool = False
) -> tuple[dict, dict]:
    """Cleaned form data -> (JSON-safe config, secrets with blanks kept as saved).

    Transient fields (used by Test only) are dropped unless `keep_transient`.
    """
    config, secrets = {}, dict(saved_secrets)
    for name, value in cleaned.items():
        if name in provider_cls.transient_fields and not keep_transient:
            continue
        if name in provider_cls.secret_fields:
            if value:
                secrets[name] = value
        elif isinstance(value, (datetime.date, datetime.datetime)):
            config[name] = value.isoformat()
        else:
            config[name] = value
    return config, secrets


def _drop_unbound_secrets(
    provider_cls, saved_config: dict, config: dict, secrets: dict
) -> dict:
    """`secrets` without those bound to settings that now have other values (the
    provider's `bound_secrets`): a delegated grant for another client, tenant or
    account, say, must not be kept or used."""
    for keys, names in provider_cls.bound_secrets.items():
        if any(saved_config.get(name) != config.get(name) for name in names):
            secrets = {k: v for k, v in secrets.items() if k not in keys}
    return secrets


def _changed_fields(provider_cls, before: Integration, config: dict, secrets: dict):
    names = []
    for name in dict.fromkeys([*before.config, *config]):
        if before.config.get(name) != config.get(name):
            names.append(name)
    for name in dict.fromkeys([*before.secrets, *secrets]):
        if before.secrets.get(name) != secrets.get(name):
            names.append(name)
    return [provider_cls.field_label(name) for name in names]


@transaction.atomic
def integration_save(
    *,
    provider_key: str,
    cleaned_data: dict,
    actor,
    state: IntegrationState = IntegrationState.ACTIVE,
) -> Integration:
    """Store the drawer's values and make the tool active."""
    provider_cls = get_provider_class(provider_key)
    integration, _ = Integration.objects.select_for_update().get_or_create(
        provider=provider_key
    )
    config, secrets = _split(provider_cls, cleaned_data, integration.secrets)
    secrets = _drop_unbound_secrets(provider_cls, integration.config, config, secrets)
    changed = _changed_fields(provider_cls, integration, config, secrets)
    was_active = integration.is_active
    credentials_changed = any(
        integration.config.get(k) != config.get(k)
        or integration.secrets.get(k) != secrets.get(k)
        for k in _CREDENTIAL_KEYS
    )
    integration.config = config
    integration.secrets = secrets
    if credentials_changed:
        integration.token_cache = ""
    integration.state = state
    integration.attention_code = ""
    integration.attention_detail = ""
    integration.updated_by = actor
    if not was_active:
        integration.activated_at = timezone.now()
    integration.save()
    audit_record(
        provider_key=provider_key,
        action=AuditAction.CHANGED if was_active else AuditAction.ACTIVATED,
        actor=actor,
        changed_fields=changed,
    )
    return integration


@transaction.atomic
def integration_deactivate(*, provider_key: str, actor) -> Integration:
    """Switch a tool off. Its settings are kept so it can be activated again."""
    integration = Integration.objects.select_for_update().get(provider=provider_key)
    integration.state = IntegrationState.INACTIVE
    integration.updated_by = actor
    integration.save(update_fields=["state", "updated_by", "updated_at"])
    audit_record(provider_key=provider_key, action=AuditAction.DEACTIVATED, actor=actor)
    return integration


def test_connection_allowed(user) -> bool:
    """Rate limit: TEST_CONNECTION_RATE_LIMIT tests per user per minute."""
    minute = int(timezone.now().timestamp() // 60)
    key = f"test-connection:{user.pk}:{minute}"
    cache.add(key, 0, timeout=90)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=90)
        count = 1
    return count <= settings.TEST_CONNECTION_RATE_LIMIT


def integration_test_connection(
    *,
    provider_key: str,
    cleaned_data: dict,
    actor,
    recipients: list[str] | None = None,
) -> TestReport:
    """Run the provider's test steps on the drawer's values, saved or not.

    A blank secret means the saved one. Nothing is saved; the token cache is not
    shared with the saved integration, since the values may differ. The whole test
    is bounded by TEST_CONNECTION_TIMEOUT.
    """
    provider_cls = get_provider_class(provider_key)
    saved = integration_for(provider_key)
    config, secrets = _split(
        provider_cls, cleaned_data, saved.secrets, keep_transient=True
    )
    secrets = _drop_unbound_secrets(provider_cls, saved.config, config, secrets)
    # A delegated grant belongs to the saved integration: refreshing it must update
    # the saved row (the old refresh token stops working once redeemed).
    provider = provider_cls(
        config=config,
        secrets=secrets,
        grant_store=IntegrationGrantStore(saved.pk) if saved.pk else None,
    )
    limit = settings.TEST_CONNECTION_TIMEOUT

    report = provider.new_report()

    def run():
        with time_limit(limit):
            return provider.test_connection(recipients=recipients, report=report)

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-connection")
    future = executor.submit(run)
    try:
        report = future.result(timeout=limit + 1)
    except FutureTimeout:
        # The thread may still be running: answer with a snapshot of its progress.
        report = TestReport([dataclasses.replace(step) for step in report.steps])
        report.fail_remaining(ConnectionFailed("time limit reached", code="timeout"))
    finally:
        executor.shutdown(wait=False)
    error = report.error
    if error is not None:
        logger.info(
            "Test Connection for %s failed at %r: %s",
            provider_key,
            report.failed_step.key,
            error.detail,
        )
    # What the peer said (a banner, a reply's text), cut and sanitised by the error,
    # is kept here and in the log only, never on the page (outbound policy).
    audit_record(
        provider_key=provider_key,
        action=(
            AuditAction.ADDRESS_REFUSED
            if isinstance(error, AddressRefused)
            else AuditAction.TESTED
        ),
        actor=actor,
        error=error,
        detail=error.detail[:500] if error is not None else "",
    )
    return report


def integration_validate_and_save(
    *, provider_key: str, cleaned_data: dict, actor
) -> tuple[TestReport, Integration | None]:
    """Send a validation email to the acting admin and save only if it was accepted.

    Returns the test report and the saved integration (None when nothing was saved).
    An admin without an email address gets `ConfigurationError(admin_email_missing)`.
    """
    email = (getattr(actor, "email", "") or "").strip()
    if not email:
        raise ConfigurationError(
            "acting admin has no email", code="admin_email_missing"
        )
    report = integration_test_connection(
        provider_key=provider_key,
        cleaned_data=cleaned_data,
        actor=actor,
        recipients=[email],
    )
    if not report.ok:
        return report, None
    integration = integration_save(
        provider_key=provider_key, cleaned_data=cleaned_data, actor=actor
    )
    return report, integration
