"""Test Connection's progress for the drawer's script (static/js/drawer.js).

The answer streams one JSON object a line (NDJSON) while the test runs, so the page
shows every step at once and ticks them off as they end:

- first `{"html": ...}`: the result area with every step listed, the first one
  running;
- then `{"steps": [{"key", "status"}, ...]}` each time a step ends (the next one
  `running`);
- last `{"done": true, "html": ...}`: the result area as the page without the
  script shows it (success, or the failed step and what to do).
"""

import json

from django.http import StreamingHttpResponse
from django.template.loader import render_to_string

from integrations import services
from integrations.providers.base import StepStatus

#: What the drawer's script asks for (Accept) to get the progress.
ACCEPTED = "application/x-ndjson"
RESULT_PARTIAL = "integrations/notification_tools.html#test-result"
#: The status the page shows for the step under way (not a `StepStatus`: a
#: report only knows it as the first pending step).
RUNNING = "running"


def _line(data: dict) -> bytes:
    return (json.dumps(data) + "\n").encode()


def _mark_running(report):
    for step in report.steps:
        if step.status == StepStatus.PENDING:
            step.status = RUNNING
            break
    return report


def test_connection_stream(
    request, *, provider_key: str, cleaned_data: dict, context: dict
) -> StreamingHttpResponse:
    """Run Test Connection on the drawer's cleaned values, streaming its progress.
    `context` is the drawer's (the result partial renders with it)."""

    def render(**extra) -> str:
        return render_to_string(RESULT_PARTIAL, {**context, **extra}, request)

    def events():
        progress = services.integration_test_connection_progress(
            provider_key=provider_key, cleaned_data=cleaned_data, actor=request.user
        )
        started = False
        try:
            for report, finished in progress:
                if finished:
                    yield _line({"done": True, "html": render(report=report)})
                elif not started:
                    started = True
                    report = _mark_running(report)
                    yield _line({"html": render(report=report, running=True)})
                else:
                    steps = _mark_running(report).steps
                    yield _line(
                        {"steps": [{"key": s.key, "status": s.status} for s in steps]}
                    )
        finally:
            # Closed early (the page went away): the test still ends and is audited.
            progress.close()

    response = StreamingHttpResponse(
        events(), content_type=f"{ACCEPTED}; charset=utf-8"
    )
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"  # a proxy (nginx) passes each line on
    return response
