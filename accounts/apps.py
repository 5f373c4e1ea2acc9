from django.apps import AppConfig
from django.core import checks


class AccountsConfig(AppConfig):
    """Sign-in protection on top of django-axes: the lockout page, its audit trail,
    unlocking by a security admin, and the shared-cache deployment check."""

    name = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        from axes.signals import user_locked_out

        from accounts import checks as accounts_checks
        from accounts import signals

        user_locked_out.connect(
            signals.audit_sign_in_locked_out, dispatch_uid="accounts.lockout_audit"
        )
        checks.register(
            accounts_checks.shared_cache_check, checks.Tags.caches, deploy=True
        )
