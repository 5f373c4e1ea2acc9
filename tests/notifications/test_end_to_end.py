"""From a real scanner's SARIF to an email in the sandbox's mailbox."""

import pytest

from notifications.models import Delivery, DeliveryMode, DeliveryStatus, EventKind
from projects.models import ScanSource
from projects.services import scan_import
from tests.fixtures.bandit import bandit_sarif

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def bandit_report() -> bytes:
    return bandit_sarif()


def test_bandit_scan_import_emails_new_vulnerabilities(
    sandbox, project, link, bandit_report, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        scan = scan_import(project=project, sarif=bandit_report, source=ScanSource.API)

    deliveries = list(Delivery.objects.order_by("pk"))
    # new vulnerabilities and scan completed, one email each (immediate delivery)
    kinds = sorted(d.event.kind for d in deliveries)
    assert kinds == [EventKind.NEW_VULNERABILITIES, EventKind.SCAN_COMPLETED]
    assert all(d.status == DeliveryStatus.SENT for d in deliveries), [
        (d.status, d.error_code) for d in deliveries
    ]
    recipient = sandbox.seed["recipient"]
    messages = sandbox.messages(to=recipient)
    assert len(messages) == 2
    new = next(m for m in messages if "new vulnerabilit" in m["subject"])
    assert new["subject"].endswith(f"new vulnerabilities in {project.name}")
    assert new["subject"].startswith("[")
    assert scan.new_count > 0
    assert f"{scan.new_count} new vulnerabilities" in new["subject"]
    # top findings with rule, location and a link back to the product
    finding = project.findings.order_by("pk").first()
    assert finding.rule_id in new["html"]
    # Graph carries one body: the HTML part (SMTP sends both parts).
    assert finding.path in new["html"]
    assert (
        f"https://appsec.example.test/projects/{project.slug}/findings/" in new["html"]
    )
    assert new[
        "message_id"
    ] == f"<delivery-{deliveries[0].uuid}@appsec.example.test>" or (
        new["message_id"] == f"<delivery-{deliveries[1].uuid}@appsec.example.test>"
    )
    sent = {d.uuid for d in deliveries}
    assert {m["message_id"] for m in messages} == {
        f"<delivery-{u}@appsec.example.test>" for u in sent
    }
    # one token for the whole batch
    assert sandbox.counters()["token_requests"]["client_credentials"] == 1


def test_digest_sends_one_email_per_scan(
    sandbox, project, link, bandit_report, django_capture_on_commit_callbacks
):
    link.delivery_mode = DeliveryMode.DIGEST
    link.save()
    with django_capture_on_commit_callbacks(execute=True):
        scan_import(project=project, sarif=bandit_report, source=ScanSource.API)

    (delivery,) = Delivery.objects.all()
    assert delivery.status == DeliveryStatus.SENT
    assert len(delivery.digest_event_ids) == 2
    (message,) = sandbox.messages()
    assert f"Scan of {project.name}:" in message["subject"]
    assert "Scan completed" in message["html"]
    assert "new vulnerabilit" in message["html"]
