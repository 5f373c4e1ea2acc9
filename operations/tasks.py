"""The one task that runs periodic jobs (see `operations.periodic`).

Thin: `run_periodic_job` books the job's next run, then runs it. With Django 6 the
import becomes `from django.tasks import task`.
"""

import logging

from django_tasks import task

from operations import periodic
from operations.heartbeat import worker_heartbeat

logger = logging.getLogger(__name__)


@task(takes_context=True)
def run_periodic_job(context, name: str) -> dict:
    """Run the periodic job `name` if this task is its booking and it is due;
    book its next run first, so a failure or a killed worker keeps the schedule.
    A failed job fails the task too (its error is also kept on the job's row).
    Every run records this worker's heartbeat (at most every few seconds)."""
    try:
        worker_heartbeat()
    except Exception:
        logger.exception("Could not record the worker heartbeat")
    outcome = periodic.run_booked(name, task_id=str(context.task_result.id))
    if outcome["outcome"] == "failed":
        raise periodic.PeriodicJobFailed(f"{name}: {outcome['error']}")
    return outcome
