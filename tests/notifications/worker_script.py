"""Run in a subprocess by the worker tests, against a file or PostgreSQL database.

    python -m tests.notifications.worker_script setup COUNT [TRANSACTIONS]
    python -m tests.notifications.worker_script status

The environment carries DATABASE_URL, the sandbox's hosts and the encryption keys.
`setup` migrates, activates Microsoft Azure Mail with the sandbox's seed values, links
it to a project and emits COUNT events in TRANSACTIONS transactions (each enqueues one
`deliver` task with the database backend). `status` prints the deliveries and the
tasks (their status, name, return value and error) as JSON.
"""

import json
import os
import sys


def main(argv):
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.core.management import call_command
    from django.db import transaction

    from notifications.models import Delivery, EventKind, ToolLink
    from notifications.services import event_emit
    from projects.models import Project
    from tests.tools import activate_azure_mail

    command = argv[0]
    if command == "setup":
        count = int(argv[1])
        transactions = int(argv[2]) if len(argv) > 2 else 1
        call_command("migrate", verbosity=0)
        seed = json.loads(os.environ["SANDBOX_SEED"])
        tool = activate_azure_mail(seed)
        project = Project.objects.create(name="Worker drill", slug="worker-drill")
        ToolLink.objects.create(
            project=project,
            integration=tool,
            notify_new_vulnerabilities=False,
            notify_scan_completed=True,
        )
        per = -(-count // transactions)
        emitted = 0
        while emitted < count:
            with transaction.atomic():
                for _ in range(min(per, count - emitted)):
                    event_emit(
                        project=project,
                        kind=EventKind.SCAN_COMPLETED,
                        payload={"new": emitted, "counts": {}},
                    )
                    emitted += 1
    elif command == "status":
        rows = [
            {
                "uuid": str(d.uuid),
                "status": d.status,
                "attempts": d.attempts,
                "error_code": d.error_code,
                "sent_at": d.sent_at.timestamp() if d.sent_at else None,
            }
            for d in Delivery.objects.order_by("pk")
        ]
        from django_tasks_db.models import DBTaskResult

        results = list(
            DBTaskResult.objects.order_by("enqueued_at").values_list(
                "id",
                "worker_ids",
                "task_path",
                "status",
                "return_value",
                "exception_class_path",
                "traceback",
                "run_after",
                "started_at",
                "finished_at",
            )
        )
        task_workers = {}
        for path, worker_ids in DBTaskResult.objects.values_list(
            "task_path", "worker_ids"
        ):
            task_workers.setdefault(path.rpartition(".")[2], []).extend(worker_ids)
        print(
            json.dumps(
                {
                    "deliveries": rows,
                    "tasks": [status for _, _, _, status, *_ in results],
                    "task_runs": [
                        [path.rpartition(".")[2], status]
                        for _, _, path, status, *_ in results
                    ],
                    "task_workers": task_workers,
                    "task_results": [
                        {
                            "id": str(pk),
                            "worker_ids": worker_ids,
                            "name": path.rpartition(".")[2],
                            "status": status,
                            "return_value": value,
                            "exception": exception,
                            "traceback": traceback,
                            "times": [
                                t.timestamp() if t else None
                                for t in (run_after, started, finished)
                            ],
                        }
                        for (
                            pk,
                            worker_ids,
                            path,
                            status,
                            value,
                            exception,
                            traceback,
                            run_after,
                            started,
                            finished,
                        ) in results
                    ],
                },
                default=str,
            )
        )
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
