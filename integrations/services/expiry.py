"""When a tool's credential (client secret or certificate) expires, and where that
came from (issue 14).

- A certificate: its own notAfter (`certificate_expires_on`, saved with it).
- A client secret: the app registration, when the app may read it (the optional
  Application.Read.All application permission; Graph
  `GET /applications(appId='…')?$select=passwordCredentials,keyCredentials`), the
  secret found by its `hint` (the first three characters of its value); else the
  date the admin typed (`secret_expires_on`), if any.

`integration_credential_expiry_update` stores the answer on the row
(`credential_expires_on`, `credential_expiry_source`); saving a tool stores the
local part at once and reads the app registration after the commit; the daily job
(`notifications.expiry_reminders`) reads it again.

https://learn.microsoft.com/graph/api/application-get
https://learn.microsoft.com/graph/api/resources/passwordcredential
"""

import datetime
import logging
from dataclasses import dataclass

from cryptography import x509
from django.db import transaction
from django.utils import timezone

from integrations.exceptions import IntegrationError, PermissionMissing
from integrations.models import Integration
from integrations.providers import clouds, identity
from integrations.providers.graph import graph_client

logger = logging.getLogger(__name__)

#: `ExpiryReminder.credential` values.
CLIENT_SECRET = "client_secret"
CERTIFICATE = "certificate"

#: `Integration.credential_expiry_source` values.
SOURCE_CERTIFICATE = "certificate"
SOURCE_APP_REGISTRATION = "app_registration"
SOURCE_TYPED = "typed"

#: SMTP authentication types that sign in with the app registration's credential.
_APP_CREDENTIAL_AUTH = ("oauth_app", "oauth_delegated")


@dataclass(frozen=True)
class CredentialExpiry:
    """A tool's credential in use and when it expires (None: not known)."""

    credential: str = ""
    expires_on: datetime.date | None = None
    source: str = ""


def _local_date(moment: datetime.datetime) -> datetime.date:
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=datetime.UTC)
    return timezone.localtime(moment).date()


def _parse_moment(value) -> datetime.datetime | None:
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def credential_in_use(config: dict, secrets: dict) -> str:
    """CERTIFICATE, CLIENT_SECRET or "" (a password, no sign-in, nothing saved)."""
    auth_type = config.get("auth_type")
    if auth_type and auth_type not in _APP_CREDENTIAL_AUTH:
        return ""
    if (
        config.get("certificate_thumbprint")
        and secrets.get("private_key")
        and auth_type in (None, "", "oauth_app")
    ):
        return CERTIFICATE
    if config.get("client_id") and secrets.get("client_secret"):
        return CLIENT_SECRET
    return ""


def _certificate_expiry(config: dict) -> datetime.date | None:
    moment = _parse_moment(config.get("certificate_expires_on"))
    if moment is None and config.get("certificate"):
        try:
            certificate = x509.load_pem_x509_certificate(
                str(config["certificate"]).encode()
            )
        except ValueError:
            return None
        moment = certificate.not_valid_after_utc
    return _local_date(moment) if moment else None


def _typed_expiry(config: dict) -> datetime.date | None:
    value = config.get("secret_expires_on")
    if not value:
        return None
    try:
        return datetime.date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def credential_expiry_local(*, config: dict, secrets: dict) -> CredentialExpiry:
    """What the saved settings say, without asking Entra ID: the certificate's
    notAfter, or the client secret's typed date."""
    credential = credential_in_use(config, secrets)
    if credential == CERTIFICATE:
        expires_on = _certificate_expiry(config)
        return CredentialExpiry(
            credential, expires_on, SOURCE_CERTIFICATE if expires_on else ""
        )
    if credential == CLIENT_SECRET:
        expires_on = _typed_expiry(config)
        return CredentialExpiry(
            credential, expires_on, SOURCE_TYPED if expires_on else ""
        )
    return CredentialExpiry()


def secret_end_from_registration(
    password_credentials: list, client_secret: str
) -> datetime.date | None:
    """The end date of the registration's secret whose `hint` (first three
    characters of its value) is the saved secret's; of several with that hint, the
    latest (the newest secret is the one most likely pasted). None: no match."""
    hint = client_secret[:3]
    ends = []
    for entry in password_credentials:
        if not isinstance(entry, dict) or entry.get("hint") != hint:
            continue
        moment = _parse_moment(entry.get("endDateTime"))
        if moment is not None:
            ends.append(moment)
    if not ends:
        return None
    if len(ends) > 1:
        logger.info(
            "%d client secrets share the saved one's hint: the latest end is used",
            len(ends),
        )
    return _local_date(max(ends))


def _endpoints(config: dict) -> clouds.CloudEndpoints:
    cloud = config.get("cloud")
    if cloud not in clouds.Cloud.values:
        cloud = clouds.Cloud.GLOBAL
    return clouds.endpoints(cloud)


def _registration_expiry(config: dict, secrets: dict) -> datetime.date | None:
    """The client secret's end date read from the app registration; None when it
    has no secret with the saved one's hint. Raises `IntegrationError`
    (`PermissionMissing` without Application.Read.All)."""
    endpoints = _endpoints(config)
    creds = identity.app_credentials(endpoints.authority_host, config, secrets)
    token = identity.acquire_app_token(creds, [f"{endpoints.graph_resource}/.default"])
    registration = graph_client(endpoints.graph_host).application_credentials(
        access_token=token, client_id=config["client_id"]
    )
    return secret_end_from_registration(
        registration["passwordCredentials"], secrets["client_secret"]
    )


def credential_expiry_read(integration: Integration) -> CredentialExpiry:
    """The credential's expiry as best known now: the certificate's, the app
    registration's for a client secret (when the app may read it), else the typed
    date. A failure other than "may not read" (403) keeps a date read before from
    the registration, for the same secret."""
    config, secrets = integration.config or {}, integration.secrets or {}
    local = credential_expiry_local(config=config, secrets=secrets)
    if local.credential != CLIENT_SECRET:
        return local
    if config.get("authorization_endpoint") and config.get("token_endpoint"):
        return local  # not a Microsoft tenant: no app registration to read
    try:
        expires_on = _registration_expiry(config, secrets)
    except PermissionMissing as error:
        logger.info(
            "%s cannot read its app registration (%s): using the typed date",
            integration.provider,
            error.code,
        )
        return local
    except IntegrationError as error:
        logger.warning(
            "%s: reading the app registration failed: %s",
            integration.provider,
            error,
        )
        if integration.credential_expiry_source == SOURCE_APP_REGISTRATION:
            return CredentialExpiry(
                CLIENT_SECRET,
                integration.credential_expires_on,
                SOURCE_APP_REGISTRATION,
            )
        return local
    if expires_on is None:
        logger.info(
            "%s: no secret of the app registration has the saved one's hint",
            integration.provider,
        )
        return local
    return CredentialExpiry(CLIENT_SECRET, expires_on, SOURCE_APP_REGISTRATION)


def integration_credential_expiry_update(
    *, integration: Integration, read_registration: bool = True
) -> CredentialExpiry:
    """Read the credential's expiry (`credential_expiry_read`, or only the saved
    settings without `read_registration`) and store it on the row."""
    if read_registration:
        expiry = credential_expiry_read(integration)
    else:
        expiry = credential_expiry_local(
            config=integration.config or {}, secrets=integration.secrets or {}
        )
    integration.credential_expires_on = expiry.expires_on
    integration.credential_expiry_source = expiry.source
    if integration.pk:
        Integration.objects.filter(pk=integration.pk).update(
            credential_expires_on=expiry.expires_on,
            credential_expiry_source=expiry.source,
        )
    return expiry


def _update_after_save(integration_id: int) -> None:
    integration = Integration.objects.filter(pk=integration_id).first()
    if integration is not None and integration.is_active:
        integration_credential_expiry_update(integration=integration)


def credential_expiry_store_on_save(integration: Integration) -> None:
    """For a tool being saved (the locked row, saved by the caller): put the local
    expiry on it now, and read the app registration once the save is committed
    (a failure there is logged; the save stands)."""
    integration_credential_expiry_update(
        integration=integration, read_registration=False
    )
    if integration.pk:
        pk = integration.pk
        transaction.on_commit(lambda: _update_after_save(pk), robust=True)
