"""`build_message` as it was before it was made cheaper (`EmailMessage` under the
email package's SMTP policy), verbatim: the reference the compat32 builder is
compared with (tests/integrations/providers/test_smtp_message.py) and measured
against (bench/email_build.py)."""

from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from integrations.text import single_line


def reference_build_message(email, *, sender, sender_name=""):
    def cte(text):
        return (
            "7bit"
            if text.isascii() and max(map(len, text.splitlines() or [""])) < 990
            else "quoted-printable"
        )

    message = EmailMessage(policy=email_policy.SMTP)
    message["Subject"] = email.subject
    local, _, domain = sender.rpartition("@")
    message["From"] = Address(
        display_name=single_line(sender_name, 100), username=local, domain=domain
    )
    message["To"] = ", ".join(email.to)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = email.message_id or make_msgid(domain=domain or None)
    for name, value in (email.headers or {}).items():
        if name.lower() in {"from", "to", "subject", "message-id", "date", "cc", "bcc"}:
            continue
        message[name] = value
    message.set_content(email.text or "", cte=cte(email.text or ""))
    if email.html:
        message.add_alternative(email.html, subtype="html", cte=cte(email.html))
    return message
