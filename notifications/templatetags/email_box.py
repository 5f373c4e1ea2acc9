"""`{% email_box_status integration %}`: on a tool's card (Integrations › Notification
Tools), what its Email box last read and which addresses bounce through it."""

from django import template

from notifications import selectors

register = template.Library()


@register.inclusion_tag("notifications/_email_box_status.html")
def email_box_status(integration):
    return selectors.email_box_status(integration=integration)
