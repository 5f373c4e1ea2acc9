"""`{% load times %}{{ value|when }}`: every moment on every page, one way.

"2026-12-01 14:05 UTC" in the viewer's time zone (Your settings), inside
`<time datetime="...">` with the seconds in its tooltip; a date alone is
"2026-12-01"; None is "" (so `{{ value|when|default:_("never") }}` works).
"""

from django import template

from accounts.time_zones import display_time, time_html

register = template.Library()


@register.filter(is_safe=True)
def when(value):
    return time_html(value)


@register.filter
def when_text(value):
    """The same words as `when` without the `<time>` element, for attributes and
    `{% blocktranslate %}` variables: "2026-12-01 14:05 UTC", a date alone
    "2026-12-01", None ""."""
    return display_time(value)
