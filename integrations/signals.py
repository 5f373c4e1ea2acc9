"""What integrations tells the apps above it, without importing them.

`tool_ready` is sent, after the commit, each time a tool is saved or authorized
active (`integration_id`): notifications sends what waited for it then, instead of
at the next recheck.
"""

from django.dispatch import Signal

tool_ready = Signal()
