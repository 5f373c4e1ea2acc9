"""Save & Authorize: the delegated OAuth 2.0 auth-code flow, started from the drawer
and completed at the callback.

The settings Save & Authorize was clicked with wait, encrypted, with the flow
(`OAuthAuthorization.pending_settings`) and are applied by the callback in the
transaction that stores the new grant. Until then a tool that was working keeps its
settings, its grant and its state: an abandoned or refused sign-in changes nothing.
A tool that was not working yet (never activated, or never authorized) is saved at
once as "Authorization pending", so that its card says what it waits for.
"""

import datetime
import hashlib
import logging
import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations.exceptions import (
    AuthorizationRefused,
    AuthorizationRequired,
    ConfigurationError,
    IntegrationError,
)
from integrations.models import (
    AuditAction,
    Integration,
    IntegrationState,
    OAuthAuthorization,
)
from integrations.providers import delegated
from integrations.registry import get_provider_class
from integrations.selectors import integration_for
from integrations.services.audit import audit_record
from integrations.services.tools import _split, _store_settings, integration_save
from integrations.text import single_line

logger = logging.getLogger(__name__)

#: States of a tool that keeps what it has until a new sign-in completes: it was
#: working, or was once authorized (Re-authorize).
_KEPT_UNTIL_SIGNED_IN = (
    IntegrationState.ACTIVE,
    IntegrationState.NEEDS_ATTENTION,
    IntegrationState.NEEDS_REAUTHORIZATION,
)

#: Settings the callback saved in `config` before they went with the grant.
_FORMER_CONFIG_KEYS = ("authorized_account", "authorized_at")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _without_grant(secrets: dict) -> dict:
    return {k: v for k, v in secrets.items() if k not in delegated.GRANT_KEYS}


def integration_authorize_start(
    *,
    provider_key: str,
    cleaned_data: dict,
    actor,
    session_key: str,
    redirect_uri: str,
) -> str:
    """Save & Authorize: start the auth code flow (state, PKCE, nonce) and keep it
    server-side, bound to this session and this integration, with the settings it
    is for. Returns the sign-in URL to open.

    A tool that was working is left as it is (settings, grant, state) until the
    callback; any other is saved now as "authorization pending", without a grant.
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
    # Only what was typed: a secret left blank keeps the value saved when the
    # callback comes (it may have changed meanwhile, e.g. a rotated grant).
    typed = {
        name: cleaned_data[name]
        for name in provider_cls.secret_fields
        if cleaned_data.get(name)
    }
    with transaction.atomic():
        integration = (
            Integration.objects.select_for_update()
            .filter(provider=provider_key)
            .first()
        )
        if integration is None or integration.state not in _KEPT_UNTIL_SIGNED_IN:
            integration = integration_save(
                provider_key=provider_key,
                cleaned_data=cleaned_data,
                actor=actor,
                state=IntegrationState.AUTHORIZATION_PENDING,
            )
            # Not working yet: no grant to keep.
            integration.secrets = _without_grant(integration.secrets)
            integration.save(update_fields=["secrets", "updated_at"])
        # Only the newest flow may complete.
        OAuthAuthorization.objects.filter(
            integration=integration, completed_at__isnull=True
        ).update(completed_at=timezone.now(), pending_settings={})
        # Abandoned sign-ins of any tool keep no settings past their expiry.
        OAuthAuthorization.objects.filter(
            created_at__lt=timezone.now()
            - datetime.timedelta(seconds=settings.OAUTH_AUTHORIZATION_TIMEOUT)
        ).exclude(pending_settings={}).update(pending_settings={})
        OAuthAuthorization.objects.create(
            integration=integration,
            state_hash=_digest(flow["state"]),
            session_hash=_digest(session_key),
            user=actor,
            flow=flow,
            pending_settings={"config": config, "secrets": typed},
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


def _pending(row: OAuthAuthorization, integration: Integration) -> tuple[dict, dict]:
    """(config, secrets) the sign-in is for: the settings kept with the flow over
    the saved secrets, without the saved grant. A flow started before settings were
    kept with it: the saved settings."""
    pending = row.pending_settings or {}
    if "config" in pending:
        config = dict(pending["config"])
        secrets = {**integration.secrets, **(pending.get("secrets") or {})}
    else:
        config = {
            k: v for k, v in integration.config.items() if k not in _FORMER_CONFIG_KEYS
        }
        secrets = dict(integration.secrets)
    return config, _without_grant(secrets)


def integration_authorize_complete(
    *, query: dict, actor, session_key: str
) -> Integration:
    """The OAuth callback: check the state, redeem the code, check the account, then
    save the settings the sign-in was for with the new grant, encrypted, and make the
    tool active, in one transaction.

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
    ).update(completed_at=timezone.now(), pending_settings={})
    if not consumed:
        raise AuthorizationRefused("flow already used", code="authorization_reused")
    provider_cls = get_provider_class(provider_key)
    config, secrets = _pending(row, row.integration)
    age = (timezone.now() - row.created_at).total_seconds()
    try:
        if age > settings.OAUTH_AUTHORIZATION_TIMEOUT:
            raise AuthorizationRefused("flow expired", code="authorization_expired")
        if query.get("error"):
            # Anyone can put anything in the callback's query: it is logged on one
            # line and bounded (single_line), and never shown on the page.
            error = single_line(query["error"], 64)
            code = _CALLBACK_ERRORS.get(error, "authorization_failed")
            description = single_line(query.get("error_description"), 200)
            raise AuthorizationRefused(f"{error}: {description}", code=code)
        # The client and account of the settings signed in for, not the saved ones.
        provider = provider_cls(config=config, secrets=secrets)
        try:
            grant = delegated.complete_flow(
                provider.delegated_client(), flow=row.flow, auth_response=dict(query)
            )
        except AuthorizationRequired as error:
            # invalid_grant while redeeming the code: the code was used before,
            # expired, or was issued to another sign-in (its PKCE verifier does not
            # match). Elsewhere invalid_grant means a lost refresh token; here there
            # is none yet, and the admin must hear what happened to the code.
            raise AuthorizationRefused(
                error.detail,
                code="authorization_code_refused",
                request_id=error.request_id,
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
        was_active = integration.is_active
        # Compared without the grant: the new one is recorded as "Authorized".
        integration.secrets = _without_grant(integration.secrets)
        changed = _store_settings(
            integration,
            provider_cls,
            config=config,
            secrets=secrets,
            state=IntegrationState.ACTIVE,
        )
        integration.secrets = {
            **_without_grant(integration.secrets),
            **grant.as_authorized_secrets(at=time.time()),
        }
        integration.updated_by = actor
        integration.token_cache = ""
        integration.save()
        if changed:
            audit_record(
                provider_key=provider_key,
                action=AuditAction.CHANGED if was_active else AuditAction.ACTIVATED,
                actor=actor,
                changed_fields=changed,
            )
        audit_record(
            provider_key=provider_key, action=AuditAction.AUTHORIZED, actor=actor
        )
    return integration
