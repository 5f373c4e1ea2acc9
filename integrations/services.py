"""
Writes for notification tools: save, deactivate, test, mark for attention.

Views call these with cleaned form data; nothing here reads a request.
"""

import dataclasses
import datetime
import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from integrations.exceptions import (
    AuthorizationRefused,
    AuthorizationRequired,
    ConfigurationError,
    ConnectionFailed,
    IntegrationError,
    one_line,
)
from integrations.models import (
    AuditAction,
    AuditEntry,
    Integration,
    IntegrationState,
    OAuthAuthorization,
)
from integrations.providers import delegated
from integrations.providers.base import NotificationToolProvider, TestReport
from integrations.providers.http import time_limit
from integrations.registry import get_provider_class
from integrations.selectors import integration_for

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


class IntegrationTokenStore:
    """msal's token cache for a saved integration, encrypted in its row."""

    def __init__(self, integration_id: int):
        self.integration_id = integration_id

    def load(self) -> str:
        row = Integration.objects.filter(pk=self.integration_id).values_list(
            "token_cache", flat=True
        )
        return next(iter(row), "")

    def save(self, serialized: str) -> None:
        Integration.objects.filter(pk=self.integration_id).update(
            token_cache=serialized
        )


class IntegrationGrantStore:
    """A delegated grant (access and refresh token) kept in a saved integration's
    encrypted secrets, refreshed by one process at a time.

    The row lock (SELECT ... FOR UPDATE; on SQLite the IMMEDIATE transaction takes
    the write lock at BEGIN) serialises refreshes across threads and processes; the
    rotated refresh token is saved in the same transaction. A grant that is gone
    (invalid_grant) puts the integration in "Needs re-authorization".
    """

    def __init__(self, integration_id: int):
        self.integration_id = integration_id

    def refresh(self, update) -> dict:
        try:
            with transaction.atomic():
                row = (
                    Integration.objects.select_for_update()
                    .only("secrets")
                    .get(pk=self.integration_id)
                )
                secrets = dict(row.secrets)
                changes = update(secrets)
                if changes:
                    secrets.update(changes)
                    Integration.objects.filter(pk=self.integration_id).update(
                        secrets=secrets
                    )
                return secrets
        except AuthorizationRequired as error:
            integration_mark_needs_reauthorization(
                integration_id=self.integration_id, error=error
            )
            raise


def provider_for(integration: Integration) -> NotificationToolProvider:
    """The provider instance that sends for a saved integration."""
    cls = get_provider_class(integration.provider)
    return cls(
        config=integration.config,
        secrets=integration.secrets,
        token_store=IntegrationTokenStore(integration.pk) if integration.pk else None,
        grant_store=IntegrationGrantStore(integration.pk) if integration.pk else None,
    )


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


def audit_record(
    *,
    provider_key: str,
    action: AuditAction,
    actor=None,
    changed_fields=(),
    error: IntegrationError | None = None,
) -> AuditEntry:
    """Append to the audit log. Field names only, never values."""
    return AuditEntry.objects.create(
        provider=provider_key,
        action=action,
        actor=actor if actor and actor.is_authenticated else None,
        actor_name=actor.get_username() if actor and actor.is_authenticated else "",
        changed_fields=list(changed_fields),
        succeeded=error is None,
        error_code=error.code if error else "",
    )


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


@transaction.atomic
def integration_mark_needs_attention(
    *, integration: Integration, error: IntegrationError
) -> None:
    """A permanent sending failure: show it on the card until someone saves again.

    A delegated grant that is gone asks for re-authorization instead."""
    if isinstance(error, AuthorizationRequired):
        integration_mark_needs_reauthorization(
            integration_id=integration.pk, error=error
        )
        return
    updated = Integration.objects.filter(
        pk=integration.pk,
        state__in=[IntegrationState.ACTIVE, IntegrationState.NEEDS_ATTENTION],
    ).update(
        state=IntegrationState.NEEDS_ATTENTION,
        attention_code=error.code,
        attention_detail=str(error.troubleshooting.title)[:500],
    )
    if updated:
        audit_record(
            provider_key=integration.provider,
            action=AuditAction.NEEDS_ATTENTION,
            error=error,
        )


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
    audit_record(
        provider_key=provider_key, action=AuditAction.TESTED, actor=actor, error=error
    )
    return report


# --- Validate and Save, delegated authorization ---------------------------------------


def integration_mark_needs_reauthorization(
    *, integration_id: int, error: IntegrationError
) -> None:
    """A delegated grant is gone (expired, revoked): a person must sign in again."""
    integration = Integration.objects.filter(pk=integration_id).first()
    if integration is None:
        return
    updated = (
        Integration.objects.filter(pk=integration_id)
        .exclude(state__in=[IntegrationState.INACTIVE])
        .update(
            state=IntegrationState.NEEDS_REAUTHORIZATION,
            attention_code=error.code,
            attention_detail=str(error.troubleshooting.title)[:500],
        )
    )
    if updated:
        logger.warning(
            "%s needs re-authorization: %s", integration.provider, error.detail
        )
        audit_record(
            provider_key=integration.provider,
            action=AuditAction.NEEDS_ATTENTION,
            error=error,
        )


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


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def integration_authorize_start(
    *,
    provider_key: str,
    cleaned_data: dict,
    actor,
    session_key: str,
    redirect_uri: str,
) -> str:
    """Save & Authorize: save the settings as "authorization pending", start the auth
    code flow (state, PKCE, nonce) and keep it server-side, bound to this session and
    this integration. Returns the sign-in URL to open.
    """
    provider_cls = get_provider_class(provider_key)
    saved = integration_for(provider_key)
    config, secrets = _split(provider_cls, cleaned_data, saved.secrets)
    provider = provider_cls(config=config, secrets=secrets)
    if not provider.needs_authorization:
        raise ConfigurationError("these settings need no sign-in")
    # Network first (tenant discovery): nothing is saved if the tenant is wrong.
    flow = delegated.start_flow(
        provider.delegated_client(),
        scopes=provider.delegated_scopes,
        redirect_uri=redirect_uri,
        login_hint=provider.authorization_account,
    )
    with transaction.atomic():
        integration = integration_save(
            provider_key=provider_key,
            cleaned_data=cleaned_data,
            actor=actor,
            state=IntegrationState.AUTHORIZATION_PENDING,
        )
        # These settings need a new sign-in: the old grant goes.
        integration.secrets = {
            k: v
            for k, v in integration.secrets.items()
            if k not in delegated.GRANT_KEYS
        }
        integration.save(update_fields=["secrets", "updated_at"])
        # Only the newest flow may complete.
        OAuthAuthorization.objects.filter(
            integration=integration, completed_at__isnull=True
        ).update(completed_at=timezone.now())
        OAuthAuthorization.objects.create(
            integration=integration,
            state_hash=_digest(flow["state"]),
            session_hash=_digest(session_key),
            user=actor,
            flow=flow,
        )
        audit_record(
            provider_key=provider_key,
            action=AuditAction.AUTHORIZATION_STARTED,
            actor=actor,
        )
    return flow["auth_uri"]


_CALLBACK_ERRORS = {
    "access_denied": "authorization_denied",
    "consent_required": "consent_required",
    "interaction_required": "consent_required",
    "invalid_request": "authorization_failed",
}


def integration_authorize_complete(
    *, query: dict, actor, session_key: str
) -> Integration:
    """The OAuth callback: check the state, redeem the code, check the account, store
    the tokens encrypted and make the tool active.

    Raises `IntegrationError` (and changes nothing but the flow's used mark) for an
    error in the callback, an unknown, reused, foreign or expired state, a code that
    cannot be redeemed, or a grant for another mailbox.
    """
    state = str(query.get("state") or "")
    row = (
        OAuthAuthorization.objects.select_related("integration")
        .filter(state_hash=_digest(state))
        .first()
        if state
        else None
    )
    if row is None:
        raise AuthorizationRefused(
            "no pending flow for this state", code="authorization_not_pending"
        )
    provider_key = row.integration.provider
    if row.completed_at is not None:
        raise AuthorizationRefused("flow already used", code="authorization_reused")
    if row.user_id != actor.pk or row.session_hash != _digest(session_key or ""):
        raise AuthorizationRefused(
            "flow started in another session", code="authorization_other_session"
        )
    # Use it once: the first callback naming this state consumes it.
    consumed = OAuthAuthorization.objects.filter(
        pk=row.pk, completed_at__isnull=True
    ).update(completed_at=timezone.now())
    if not consumed:
        raise AuthorizationRefused("flow already used", code="authorization_reused")
    age = (timezone.now() - row.created_at).total_seconds()
    try:
        if age > settings.OAUTH_AUTHORIZATION_TIMEOUT:
            raise AuthorizationRefused("flow expired", code="authorization_expired")
        if query.get("error"):
            # Anyone can put anything in the callback's query: it is logged on one
            # line and bounded (one_line), and never shown on the page.
            error = one_line(query["error"], 64)
            code = _CALLBACK_ERRORS.get(error, "authorization_failed")
            description = one_line(query.get("error_description"), 200)
            raise AuthorizationRefused(f"{error}: {description}", code=code)
        integration = row.integration
        provider = provider_for(integration)
        grant = delegated.complete_flow(
            provider.delegated_client(), flow=row.flow, auth_response=dict(query)
        )
        expected = provider.authorization_account.lower()
        if grant.account != expected:
            raise AuthorizationRefused(
                f"signed in as {grant.account or 'unknown'}, expected {expected}",
                code="account_mismatch",
                signed_in=grant.account,
                expected=expected,
            )
    except IntegrationError as error:
        logger.info("Authorization of %s refused: %s", provider_key, error.detail)
        audit_record(
            provider_key=provider_key,
            action=AuditAction.AUTHORIZATION_FAILED,
            actor=actor,
            error=error,
        )
        raise
    with transaction.atomic():
        integration = Integration.objects.select_for_update().get(pk=row.integration_id)
        integration.secrets = {**integration.secrets, **grant.as_secrets()}
        integration.config = {
            **integration.config,
            "authorized_account": grant.account,
            "authorized_at": timezone.now().isoformat(),
        }
        integration.state = IntegrationState.ACTIVE
        integration.attention_code = ""
        integration.attention_detail = ""
        integration.updated_by = actor
        integration.token_cache = ""
        integration.save()
        audit_record(
            provider_key=provider_key, action=AuditAction.AUTHORIZED, actor=actor
        )
    return integration
