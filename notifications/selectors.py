"""Reads for tool links and the delivery log, always scoped by the caller."""

from dataclasses import dataclass

from django.db.models import QuerySet

from integrations.models import Integration, IntegrationState
from integrations.registry import providers
from integrations.selectors import active_integrations
from notifications.models import Delivery, ToolLink
from notifications.troubleshooting import delivery_troubleshooting


@dataclass
class ProjectTool:
    """One row of Project › Settings › Notification Tools."""

    integration: Integration
    name: str
    link: ToolLink | None
    default_recipients: list[str]

    @property
    def inactive(self) -> bool:
        """Linked, but an admin deactivated the tool: it sends nothing."""
        return self.integration.state == IntegrationState.INACTIVE

    @property
    def needs_attention(self) -> bool:
        return self.integration.state == IntegrationState.NEEDS_ATTENTION


def project_tools(*, project) -> list[ProjectTool]:
    """The globally active tools, and any tool linked to `project` (even if inactive)."""
    links = {
        link.integration_id: link
        for link in ToolLink.objects.filter(project=project).select_related(
            "integration"
        )
    }
    registered = providers()
    integrations = {i.pk: i for i in active_integrations().defer("token_cache")}
    for link in links.values():
        if link.integration.provider in registered:
            integrations.setdefault(link.integration_id, link.integration)
    rows = []
    for integration in sorted(integrations.values(), key=lambda i: i.provider):
        cls = registered[integration.provider]
        rows.append(
            ProjectTool(
                integration=integration,
                name=str(cls.name),
                link=links.get(integration.pk),
                default_recipients=list(integration.config.get("recipients") or []),
            )
        )
    return rows


def link_get(*, project, link_id) -> ToolLink:
    """A link of `project`; ToolLink.DoesNotExist for another project's link."""
    return ToolLink.objects.select_related("integration", "project").get(
        project=project, pk=link_id
    )


def deliveries_for_log(*, project=None) -> QuerySet[Delivery]:
    """The delivery log, newest first: one project's, or every project's."""
    deliveries = Delivery.objects.select_related(
        "project", "event", "integration"
    ).defer("integration__secrets", "integration__token_cache")
    if project is not None:
        deliveries = deliveries.filter(project=project)
    return deliveries.order_by("-created_at", "-id")


def delivery_get(*, uuid, project=None) -> Delivery:
    deliveries = Delivery.objects.select_related("project", "link", "integration")
    if project is not None:
        deliveries = deliveries.filter(project=project)
    return deliveries.get(uuid=uuid)


def annotate_for_log(deliveries) -> list[Delivery]:
    """Attach the tool's name and the error's words to each delivery for display."""
    names = {key: str(cls.name) for key, cls in providers().items()}
    rows = list(deliveries)
    for delivery in rows:
        delivery.tool_name = names.get(
            delivery.integration.provider, delivery.integration.provider
        )
        delivery.troubleshooting = delivery_troubleshooting(delivery.error_code)
    return rows
