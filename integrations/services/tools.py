"""Writes for notification tools: save, deactivate, test, validate and save.

Views call these with cleaned form data; nothing here reads a request."""

import dataclasses
import datetime
import logging
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from integrations.exceptions import (
    AddressRefused,
    AuthorizationRequired,
    AuthorizationSettingsChanged,
    ConfigurationError,
    ConnectionFailed,
)
from integrations.models import AuditAction, Integration, IntegrationState
from integrations.providers.base import TestReport
from integrations.providers.delegated import GRANT_KEYS
from integrations.providers.http import time_limit
from integrations.registry import get_provider_class
from integrations.selectors import delegated_authorization, integration_for
from integrations.services.audit import audit_record
from integrations.services.expiry import credential_expiry_store_on_save
from integrations.services.stores import IntegrationGrantStore
from integrations.signals import tool_ready

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


# A GUID, as Entra ID shows a client secret's Secret ID (its Value is a longer
# random text, e.g. "Abc8Q~..."), with or without dashes and braces.
_GUID = re.compile(
    r"\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?",
    re.IGNORECASE,
)


def client_secret_looks_like_id(cleaned_data: dict) -> bool:
    """Whether the Client Secret typed in the drawer has the shape of a Secret ID
    (a GUID) rather than of a secret's Value. Blank (keep the saved one): False."""
    value = cleaned_data.get("client_secret") or ""
    return bool(_GUID.fullmatch(value.strip()))


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
    provider_cls, saved: Integration, config: dict, secrets: dict
) -> dict:
    """`secrets` without the saved ones bound to settings that now have other
    values (the provider's `bound_secrets`): a delegated grant for another client,
    tenant or account must not be kept or used, nor a private key once its
    certificate is replaced or removed. A value given with the change is kept."""
    for keys, names in provider_cls.bound_secrets.items():
        if any(_value(saved.config, name) != _value(config, name) for name in names):
            secrets = {
                k: v
                for k, v in secrets.items()
                if k not in keys or v != saved.secrets.get(k)
            }
    return secrets


def authorization_settings_changed(
    provider_cls, saved: Integration, config: dict, secrets: dict
) -> list[str]:
    """The names of the settings a delegated grant was obtained for (the provider's
    `bound_secrets` settings and `authorization_secret_fields`) whose values in
    `config` and `secrets` differ from the saved ones."""
    names = dict.fromkeys(
        name
        for keys, bound in provider_cls.bound_secrets.items()
        if set(keys) & set(GRANT_KEYS)
        for name in bound
    )
    changed = [n for n in names if _value(saved.config, n) != _value(config, n)]
    changed += [
        n
        for n in provider_cls.authorization_secret_fields
        if _value(saved.secrets, n) != _value(secrets, n)
    ]
    return changed


def _value(values: dict, name: str):
    """A stored value, with every way of saying "nothing set" (absent, None, "",
    an empty list, an unticked box) made one, so that a field left blank is not a
    change. 0 is a value."""
    value = values.get(name)
    if value is False or (isinstance(value, (str, list, tuple, dict)) and not value):
        return None
    return value


def _changed_fields(provider_cls, before: Integration, config: dict, secrets: dict):
    """The labels of the settings whose value changed, for the audit log: a field
    left blank where nothing was set is not a change, nor is a secret left blank
    (which keeps its saved value; `_split`), nor a value saved again as it was."""
    names = []
    for name in dict.fromkeys([*before.config, *config]):
        if _value(before.config, name) != _value(config, name):
            names.append(name)
    for name in dict.fromkeys([*before.secrets, *secrets]):
        if _value(before.secrets, name) != _value(secrets, name):
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
    was_active = integration.is_active
    changed = _store_settings(
        integration, provider_cls, config=config, secrets=secrets, state=state
    )
    integration.updated_by = actor
    integration.save()
    audit_record(
        provider_key=provider_key,
        action=AuditAction.CHANGED if was_active else AuditAction.ACTIVATED,
        actor=actor,
        changed_fields=changed,
    )
    return integration


def _store_settings(
    integration: Integration, provider_cls, *, config: dict, secrets: dict, state
) -> list[str]:
    """Put `config` and `secrets` (as `_split` makes them) and `state` on the locked
    row `integration`, unsaved, dropping the secrets bound to settings that change
    and the token cache when the credentials change; clears "Needs attention".
    Returns the labels of the settings that changed, for the audit log."""
    secrets = _drop_unbound_secrets(provider_cls, integration, config, secrets)
    changed = _changed_fields(provider_cls, integration, config, secrets)
    was_active = integration.is_active
    credentials_changed = any(
        integration.config.get(k) != config.get(k)
        or integration.secrets.get(k) != secrets.get(k)
        for k in _CREDENTIAL_KEYS
    )
    integration.config = config
    integration.secrets = secrets
    # When the credential expires: the saved settings now, the app registration
    # after the commit (issue 14).
    credential_expiry_store_on_save(integration)
    if credentials_changed:
        integration.token_cache = ""
    integration.state = state
    integration.attention_code = ""
    integration.attention_detail = ""
    if not was_active:
        integration.activated_at = timezone.now()
    if state == IntegrationState.ACTIVE:
        pk = integration.pk
        transaction.on_commit(
            lambda: tool_ready.send(sender=Integration, integration_id=pk)
        )
    return changed


@transaction.atomic
def integration_save_keeping_authorization(
    *, provider_key: str, cleaned_data: dict, actor
) -> Integration:
    """Save for an authorized delegated tool: store the drawer's values and keep
    its grant (no new sign-in), for settings the grant does not depend on (To, the
    SMTP host, the sender name...).

    Raises `AuthorizationSettingsChanged` (nothing saved) when a setting the grant
    was obtained for changes: only Save & Authorize saves those. Raises
    `AuthorizationRequired` when the tool holds no grant to keep.
    """
    provider_cls = get_provider_class(provider_key)
    integration = (
        Integration.objects.select_for_update().filter(provider=provider_key).first()
    )
    if integration is None or delegated_authorization(integration) is None:
        needs_again = (
            integration is not None
            and integration.state == IntegrationState.NEEDS_REAUTHORIZATION
        )
        raise AuthorizationRequired(
            "no delegated grant to keep",
            code="reauthorization_required" if needs_again else "authorization_missing",
        )
    config, secrets = _split(provider_cls, cleaned_data, integration.secrets)
    changed = authorization_settings_changed(provider_cls, integration, config, secrets)
    if changed:
        raise AuthorizationSettingsChanged(
            f"changed: {', '.join(changed)}", fields=changed
        )
    return integration_save(
        provider_key=provider_key, cleaned_data=cleaned_data, actor=actor
    )


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


#: How often a Test Connection in progress is looked at for a step that ended.
_PROGRESS_INTERVAL = 0.1


def _snapshot(report: TestReport) -> TestReport:
    """A copy of `report` as it is now (the test's thread goes on changing it)."""
    return TestReport([dataclasses.replace(step) for step in report.steps])


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
    *_, (report, _finished) = integration_test_connection_progress(
        provider_key=provider_key,
        cleaned_data=cleaned_data,
        actor=actor,
        recipients=recipients,
    )
    return report


def integration_test_connection_progress(
    *,
    provider_key: str,
    cleaned_data: dict,
    actor,
    recipients: list[str] | None = None,
) -> Iterator[tuple[TestReport, bool]]:
    """`integration_test_connection` step by step, for a page that shows its
    progress: yields `(snapshot, False)` when the test starts and each time a step
    ends (a copy of the report so far), then `(report, True)` once, at the end,
    when the test is audited.

    Closed early (the page went away), the test still runs to its end and is
    audited; it only yields nothing more.
    """
    provider_cls = get_provider_class(provider_key)
    saved = integration_for(provider_key)
    config, secrets = _split(
        provider_cls, cleaned_data, saved.secrets, keep_transient=True
    )
    secrets = _drop_unbound_secrets(provider_cls, saved, config, secrets)
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
    deadline = time.monotonic() + limit + 1
    listening, seen = True, None
    try:
        while True:
            statuses = [step.status for step in report.steps]
            if listening and statuses != seen:
                seen = statuses
                try:
                    yield _snapshot(report), False
                except GeneratorExit:
                    listening = False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FutureTimeout
            done, _pending = wait([future], timeout=min(_PROGRESS_INTERVAL, remaining))
            if done:
                report = future.result()
                break
    except FutureTimeout:
        # The thread may still be running: answer with a snapshot of its progress.
        report = _snapshot(report)
        report.fail_remaining(ConnectionFailed("time limit reached", code="timeout"))
    finally:
        executor.shutdown(wait=False)
    error = report.error
    if (
        error is not None
        and error.code == "secret_invalid"
        and client_secret_looks_like_id(cleaned_data)
    ):
        # Said on the page and in the audit; the value itself never leaves here.
        error.code = "secret_id_pasted"
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
    if listening:
        yield report, True


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
