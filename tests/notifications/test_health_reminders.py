"""Credential expiry reminders (issue 14): 30, 14, 7 and 1 days before, once each, to
the tool-health recipients, saying which tool, which credential, the date and what
to do, with a link to the tool's settings. The product's "today" is moved with
`now=` (the app registration's end date does not depend on the sandbox's clock)."""

import datetime

import pytest
from django.utils import timezone

from integrations.models import ExpiryReminder
from notifications.services.expiry_reminders import (
    due_reminder_days,
    expiry_reminders_run,
)
from operations.periodic import get
from tests.notifications.conftest import settle
from tests.tools import activate_azure_mail, grant_application_permissions

pytestmark = pytest.mark.django_db(transaction=True)

DAY = datetime.timedelta(days=1)


@pytest.fixture
def security_admin(security_admin):
    security_admin.email = "secadmin@contoso.onmicrosoft.com"
    security_admin.save()
    return security_admin


def set_secret_expiry(sandbox, end: datetime.date) -> None:
    seed = sandbox.seed
    sandbox.control(
        "PATCH",
        f"/tenants/{seed['tenant_id']}/apps/{seed['client_id']}"
        f"/secrets/{seed['client_secret_id']}",
        json={"expires_at": f"{end.isoformat()}T12:00:00Z"},
    )


def reminders(sandbox, security_admin) -> list[dict]:
    settle()
    return [
        m
        for m in sandbox.messages(to=security_admin.email)
        if "expires" in m["subject"]
    ]


def test_due_reminder_days():
    assert due_reminder_days(31) == []
    assert due_reminder_days(30) == [30]
    assert due_reminder_days(10) == [30, 14]
    assert due_reminder_days(0) == [30, 14, 7, 1]
    assert due_reminder_days(-1) == []


def test_the_jobs_are_registered_daily_by_default():
    assert get("notifications.expiry_reminders").interval_seconds == 86400
    assert get("notifications.grant_keepalive").interval_seconds == 86400


def test_each_reminder_is_sent_once_on_its_day(sandbox, security_admin):
    grant_application_permissions(sandbox, "Application.Read.All")
    start = timezone.now()
    expires_on = timezone.localdate(start) + 31 * DAY
    set_secret_expiry(sandbox, expires_on)
    activate_azure_mail(sandbox.seed, secret_expires_on=expires_on + 100 * DAY)

    sent_on = {}
    for day in range(33):  # from 31 days left to the day after expiry
        now = start + day * DAY
        expiry_reminders_run(now=now)
        expiry_reminders_run(now=now)  # twice a day: still once
        for message in reminders(sandbox, security_admin):
            sent_on.setdefault(message["subject"], 31 - day)

    date = expires_on.isoformat()
    assert sent_on == {
        f"Microsoft Azure Mail: the client secret expires in 30 days ({date})": 30,
        f"Microsoft Azure Mail: the client secret expires in 14 days ({date})": 14,
        f"Microsoft Azure Mail: the client secret expires in 7 days ({date})": 7,
        f"Microsoft Azure Mail: the client secret expires in 1 day ({date})": 1,
    }
    assert len(reminders(sandbox, security_admin)) == 4
    [first] = [
        m for m in reminders(sandbox, security_admin) if "30 days" in m["subject"]
    ]
    html = first["html"]
    assert "Microsoft Entra ID › App registrations" in html
    assert "Certificates &amp; secrets" in html or "Certificates & secrets" in html
    assert sandbox.seed["client_id"] in html
    assert "read from the app registration" in html
    assert "https://appsec.example.test/integrations/notification-tools/" in html
    assert sandbox.seed["client_secret"] not in html


def test_a_late_first_notice_sends_one_reminder_and_marks_the_earlier_one(
    sandbox, security_admin
):
    now = timezone.now()
    expires_on = timezone.localdate(now) + 10 * DAY
    tool = activate_azure_mail(sandbox.seed, secret_expires_on=expires_on)

    assert expiry_reminders_run(now=now) == 1
    assert expiry_reminders_run(now=now + DAY) == 0

    [message] = reminders(sandbox, security_admin)
    assert message["subject"] == (
        f"Microsoft Azure Mail: the client secret expires in 10 days "
        f"({expires_on.isoformat()})"
    )
    # The typed date: the words say so, and how to have it read instead.
    assert "Application.Read.All" in message["html"]
    assert set(
        ExpiryReminder.objects.filter(integration=tool).values_list(
            "days_before", flat=True
        )
    ) == {30, 14}
    assert expiry_reminders_run(now=now + 3 * DAY) == 1  # 7 days left
    assert len(reminders(sandbox, security_admin)) == 2


def test_a_new_secret_starts_the_reminders_again(sandbox, security_admin):
    now = timezone.now()
    first_end = timezone.localdate(now) + 5 * DAY
    activate_azure_mail(sandbox.seed, secret_expires_on=first_end)
    assert expiry_reminders_run(now=now) == 1
    # Renewed: a new end date, reminded of in its own time.
    activate_azure_mail(sandbox.seed, secret_expires_on=first_end + 365 * DAY)
    assert expiry_reminders_run(now=now) == 0
    assert expiry_reminders_run(now=now + 340 * DAY) == 1
