"""Save & Authorize: the delegated OAuth 2.0 auth-code flow, started from the drawer
and completed at the callback."""

import hashlib
import logging

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
from integrations.services.stores import provider_for
from integrations.services.tools import _split, integration_save
from integrations.text import single_line

logger = logging.getLogger(__name__)


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
            # line and bounded (single_line), and never shown on the page.
            error = single_line(query["error"], 64)
            code = _CALLBACK_ERRORS.get(error, "authorization_failed")
            description = single_line(query.get("error_description"), 200)
            raise AuthorizationRefused(f"{error}: {description}", code=code)
        integration = row.integration
        provider = provider_for(integration)
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
