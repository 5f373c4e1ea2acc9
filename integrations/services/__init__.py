"""Writes for notification tools. Views and other apps import from here.

- `tools`: save, deactivate, test, validate and save; Save for an authorized
  delegated tool, which keeps its grant.
- `authorization`: Save & Authorize (delegated OAuth 2.0) and its callback.
- `stores`: a saved integration's token cache and delegated grant; `provider_for`.
- `attention`: mark a tool that cannot send "Needs attention" or "Needs
  re-authorization".
- `audit`: the audit trail.
"""

from integrations.services.attention import (
    integration_mark_needs_attention,
    integration_mark_needs_reauthorization,
)
from integrations.services.audit import audit_record
from integrations.services.authorization import (
    integration_authorize_complete,
    integration_authorize_start,
)
from integrations.services.stores import (
    IntegrationGrantStore,
    IntegrationTokenStore,
    provider_for,
)
from integrations.services.tools import (
    client_secret_looks_like_id,
    integration_deactivate,
    integration_save,
    integration_save_keeping_authorization,
    integration_test_connection,
    integration_test_connection_progress,
    integration_validate_and_save,
    test_connection_allowed,
)

__all__ = [
    "client_secret_looks_like_id",
    "IntegrationGrantStore",
    "IntegrationTokenStore",
    "audit_record",
    "integration_authorize_complete",
    "integration_authorize_start",
    "integration_deactivate",
    "integration_mark_needs_attention",
    "integration_mark_needs_reauthorization",
    "integration_save",
    "integration_save_keeping_authorization",
    "integration_test_connection",
    "integration_test_connection_progress",
    "integration_validate_and_save",
    "provider_for",
    "test_connection_allowed",
]
