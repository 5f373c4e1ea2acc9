"""Run in a subprocess by the periodic worker tests, against a file or PostgreSQL
database (DATABASE_URL in the environment).

    python -m tests.operations.periodic_script status
    python -m tests.operations.periodic_script vanish

`status` prints the periodic jobs, the worker heartbeats and the periodic task rows
as JSON; `vanish` deletes the periodic task rows still waiting (lost bookings).
"""

import json
import os
import sys


def _ts(value):
    return value.timestamp() if value else None


def main(argv):
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django_tasks.base import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    from operations.models import PeriodicJob, WorkerHeartbeat
    from operations.tasks import run_periodic_job

    tasks = DBTaskResult.objects.filter(task_path=run_periodic_job.module_path)
    if argv[0] == "vanish":
        tasks.filter(status=TaskResultStatus.READY).delete()
        return
    print(
        json.dumps(
            {
                "jobs": {
                    job.name: {
                        "runs": job.runs,
                        "failures": job.failures,
                        "last_error": job.last_error,
                        "booked_task_id": job.booked_task_id,
                        "next_run_at": _ts(job.next_run_at),
                        "last_started_at": _ts(job.last_started_at),
                    }
                    for job in PeriodicJob.objects.all()
                },
                "heartbeats": [
                    {
                        "worker": h.worker,
                        "pid": h.pid,
                        "last_seen_at": _ts(h.last_seen_at),
                    }
                    for h in WorkerHeartbeat.objects.all()
                ],
                "tasks": [
                    {
                        "id": str(t.pk),
                        "job": t.args_kwargs["args"][0],
                        "status": t.status,
                        "run_after": _ts(t.run_after),
                    }
                    for t in tasks
                ],
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
