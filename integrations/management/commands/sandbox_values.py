"""Print the sandbox's values under the drawer's labels, for bin/run.

The labels are read from the drawers' forms, so what is printed is what the admin
sees; the values are the sandbox's seeded tenant (sandbox/seed.py).
"""

from django.conf import settings
from django.core.management.base import BaseCommand

from integrations.forms.microsoft_azure_mail import MicrosoftAzureMailForm
from integrations.forms.smtp import SmtpForm
from integrations.providers.clouds import Cloud, preset
from integrations.providers.microsoft_azure_mail import MicrosoftAzureMailProvider
from integrations.providers.smtp import SmtpProvider
from integrations.providers.smtp_choices import AuthType


def _label(form_class, name: str) -> str:
    return str(form_class.base_fields[name].label)


def sandbox_value_lines() -> list[str]:
    """The lines bin/run prints: one block per tool and authentication type."""
    from sandbox import seed  # the development stand-in; only this command needs it

    azure, smtp = MicrosoftAzureMailForm, SmtpForm
    smtp_host = preset(Cloud.GLOBAL).smtp_host
    width = 15

    def row(form_class, name, value):
        return f"    {_label(form_class, name).ljust(width)} {value}"

    def smtp_head(auth_type: AuthType, note: str = "") -> str:
        head = f"  {SmtpProvider.name}, {_label(smtp, 'auth_type')} {auth_type.label}"
        return head + (f": {note}" if note else "")

    same = (
        f"    {_label(smtp, 'tenant_id')}, {_label(smtp, 'client_id')}, "
        f"{_label(smtp, 'client_secret')}: as above"
    )
    return [
        "  Sandbox values for Integrations › Notification Tools, under the "
        "drawer's labels:",
        f"  {MicrosoftAzureMailProvider.name}",
        row(azure, "tenant_id", seed.TENANT_ID),
        row(azure, "client_id", seed.CLIENT_ID),
        row(azure, "client_secret", seed.CLIENT_SECRET),
        row(azure, "sender", seed.SENDER),
        row(azure, "recipients", seed.RECIPIENT),
        f"  {SmtpProvider.name}: keep {_label(smtp, 'smtp_host')} {smtp_host} "
        "(the development settings send it to the sandbox)",
        smtp_head(AuthType.OAUTH_APP),
        same,
        row(smtp, "sender", seed.SENDER),
        row(smtp, "recipients", seed.RECIPIENT),
        smtp_head(
            AuthType.OAUTH_DELEGATED,
            f"{_label(smtp, 'username')} and {_label(smtp, 'sender')} "
            "are the sandbox user",
        ),
        same,
        row(smtp, "username", seed.USER),
        row(smtp, "sender", seed.USER),
        row(smtp, "recipients", seed.RECIPIENT),
        f"    Save & Authorize, then sign in as {seed.USER} with {seed.PASSWORD}",
        smtp_head(AuthType.BASIC),
        row(smtp, "username", seed.USER),
        row(smtp, "password", seed.PASSWORD),
        row(smtp, "sender", seed.USER),
        row(smtp, "recipients", seed.RECIPIENT),
        "  A wrong secret: paste the Secret ID instead of the Value, "
        f"{seed.CLIENT_SECRET_ID}",
        f"  {_label(azure, 'email_box')} (bounces into the delivery log): tick it in "
        "either drawer; the development settings read the sandbox's inbox (Graph, "
        f"or IMAP at {settings.M365_IMAP_HOST or preset(Cloud.GLOBAL).imap_host}:"
        f"{settings.M365_IMAP_PORT or 993})",
    ]


class Command(BaseCommand):
    help = "Print the sandbox's values under the notification tools' drawer labels."

    def handle(self, *args, **options):
        self.stdout.write("\n".join(sandbox_value_lines()))
