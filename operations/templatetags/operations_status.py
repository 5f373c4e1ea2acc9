"""`{% worker_banner %}`: the "No task worker is running" banner, for any page that
lists deliveries (templates/notifications/deliveries.html)."""

from django import template

from operations import health

register = template.Library()


@register.inclusion_tag("operations/_worker_banner.html", takes_context=True)
def worker_banner(context):
    """Shown when no task worker was seen within READYZ_WORKER_MAX_AGE_SECONDS, with
    the number of deliveries waiting (the page's project's only, on a project page)."""
    missing = health.worker_missing()
    project = context.get("project")
    return {
        "worker_missing": missing,
        "waiting": health.pending_deliveries(project=project) if missing else 0,
    }
