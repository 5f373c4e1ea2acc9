"""Linking tools to a project, switching links off, and test sends."""

import pytest

from integrations.services import integration_deactivate
from notifications.exceptions import NotificationError
from notifications.models import Delivery, Event, EventKind, ToolLink
from notifications.services import event_emit, link_create, link_send_test
from tests.notifications.conftest import settle

pytestmark = pytest.mark.django_db


def test_linking_a_deactivated_tool_is_refused(project, graph_tool, owner):
    integration_deactivate(provider_key=graph_tool.provider, actor=None)
    with pytest.raises(NotificationError, match="not active"):
        link_create(project=project, integration=graph_tool, actor=owner)
    assert not ToolLink.objects.exists()


def test_linking_an_active_tool_twice_keeps_one_link(project, graph_tool, owner):
    first = link_create(project=project, integration=graph_tool, actor=owner)
    again = link_create(project=project, integration=graph_tool, actor=owner)
    assert first.pk == again.pk and ToolLink.objects.count() == 1


def test_test_send_on_an_inactive_link_is_refused_with_a_clear_message(
    project, link, graph_tool, owner, sandbox
):
    integration_deactivate(provider_key=graph_tool.provider, actor=None)
    with pytest.raises(NotificationError) as refused:
        link_send_test(link=link, actor=owner)
    assert "inactive" in refused.value.message
    assert "security admin deactivated" in refused.value.message
    assert not Event.objects.exists() and not Delivery.objects.exists()
    assert sandbox.messages() == []


def test_test_send_on_a_switched_off_link_is_refused_with_a_clear_message(
    project, link, owner, sandbox
):
    link.enabled = False
    link.save()
    with pytest.raises(NotificationError) as refused:
        link_send_test(link=link, actor=owner)
    assert "switched off" in refused.value.message
    assert "Tick Enabled" in refused.value.message
    assert not Event.objects.exists() and not Delivery.objects.exists()
    assert sandbox.messages() == []


def test_switched_off_link_gets_no_delivery_and_sends_nothing(
    project, link, sandbox, django_capture_on_commit_callbacks
):
    link.enabled = False
    link.save()
    with django_capture_on_commit_callbacks(execute=True):
        for kind in (EventKind.SCAN_COMPLETED, EventKind.NEW_VULNERABILITIES):
            event_emit(project=project, kind=kind, payload={"counts": {"high": 1}})
    assert Event.objects.count() == 2
    assert not Delivery.objects.exists()
    assert settle() == []
    assert sandbox.messages() == []


def test_delivery_written_before_the_link_was_switched_off_is_not_sent(
    project, link, sandbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})
    link.enabled = False
    link.save()
    (delivery,) = settle()
    assert delivery.status == "skipped" and delivery.error_code == "link_disabled"
    assert sandbox.messages() == []
