"""The periodic job registry: booking on the database task backend (once, even
under concurrent bookers), running a booked job and booking the next, a failing job
keeping its schedule, vanished or finished bookings re-booked, and `manage.py
run_periodic` (--list, --job, due-only, the run lock)."""

import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from operations import periodic
from operations.models import PeriodicJob
from operations.tasks import run_periodic_job
from tests.operations import jobs as test_jobs

DB_BACKEND = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


@pytest.fixture
def registry():
    """Register test jobs; remove them afterwards."""
    names = []

    def add(name, interval=60.0, func="tests.operations.jobs.record", **options):
        periodic.register(name, interval, func, f"Test job {name}", **options)
        names.append(name)
        return name

    test_jobs.CALLS.clear()
    yield add
    for name in names:
        periodic.unregister(name)
    test_jobs.CALLS.clear()


@pytest.fixture
def db_backend(settings):
    settings.TASKS = DB_BACKEND


def task_rows(name, **filters):
    """The task rows of the periodic task for job `name`."""
    rows = DBTaskResult.objects.filter(
        task_path=run_periodic_job.module_path, **filters
    )
    return [row for row in rows if row.args_kwargs["args"] == [name]]


def booked_rows(name):
    return task_rows(name, status=TaskResultStatus.READY)


def run_booking(name):
    """What a worker does with the job's booked task: take it (RUNNING), run it
    with its id, record it finished."""
    task_id = PeriodicJob.objects.get(name=name).booked_task_id
    rows = DBTaskResult.objects.filter(pk=task_id)
    rows.update(status=TaskResultStatus.RUNNING, started_at=timezone.now())
    outcome = periodic.run_booked(name, task_id=task_id)
    failed = outcome["outcome"] == "failed"
    rows.update(
        status=TaskResultStatus.FAILED if failed else TaskResultStatus.SUCCESSFUL,
        finished_at=timezone.now(),
    )
    return outcome


# -- The registry ---------------------------------------------------------------------


def test_registry_lists_the_builtin_and_registered_jobs(db, registry):
    registry("test.listed", 12.5)
    listed = {job.name: job for job in periodic.jobs()}
    assert {
        "operations.heartbeat",
        "operations.retention",
        "notifications.recover",
    } <= (set(listed))
    job = listed["test.listed"]
    assert job.interval_seconds == 12.5 and job.description == "Test job test.listed"
    assert job.runs == 0 and job.next_run_at is None and job.enabled


def test_registry_reads_intervals_from_settings_and_0_turns_a_job_off(
    db, registry, settings
):
    settings.WORKER_HEARTBEAT_SECONDS = 7
    assert periodic.get("operations.heartbeat").interval_seconds == 7
    settings.WORKER_HEARTBEAT_SECONDS = 0
    assert not periodic.get("operations.heartbeat").enabled
    assert periodic.run_due(["operations.heartbeat"]) == [
        {"job": "operations.heartbeat", "outcome": "disabled"}
    ]


def test_registry_validates_names_functions_and_duplicates(registry):
    registry("test.once")
    registry("test.once")  # the same registration again (a re-import) is fine
    with pytest.raises(ValueError, match="registered twice"):
        periodic.register("test.once", 1, "tests.operations.jobs.explode")
    with pytest.raises(ValueError, match="name"):
        periodic.register("Bad Name!", 1, "tests.operations.jobs.record")
    with pytest.raises(TypeError):
        periodic.register("test.bad-func", 1, 42)
    periodic.register("test.negative", -5, "tests.operations.jobs.record")
    try:
        with pytest.raises(ValueError, match="positive"):
            periodic.get("test.negative").interval_seconds  # noqa: B018
    finally:
        periodic.unregister("test.negative")


def test_decorator_registers_a_plain_function(registry):
    @periodic.periodic("test.decorated", 5)
    def tidy():
        """Tidies."""

    try:
        job = periodic.get("test.decorated")
        assert job.callable() is tidy and job.description == "Tidies."
    finally:
        periodic.unregister("test.decorated")


# -- Booking on the database backend --------------------------------------------------


def test_ensure_booked_books_each_job_once(db, db_backend, registry):
    name = registry("test.book")
    assert periodic.ensure_booked([name]) == [name]
    assert periodic.ensure_booked([name]) == []  # already booked: nothing more
    (task_row,) = booked_rows(name)
    row = PeriodicJob.objects.get(name=name)
    assert row.booked_task_id == str(task_row.pk)
    assert task_row.run_after == row.next_run_at  # a new job is due at once


def test_immediate_backend_books_nothing(db, registry):
    name = registry("test.immediate")
    assert not periodic.can_book()
    assert periodic.ensure_booked([name]) == []
    assert not PeriodicJob.objects.filter(name=name).exclude(booked_task_id="").exists()


def test_booked_run_runs_the_job_and_books_the_next(db, db_backend, registry):
    name = registry("test.run", interval=60)
    periodic.ensure_booked([name])
    first = PeriodicJob.objects.get(name=name).booked_task_id
    before = timezone.now()
    outcome = run_booking(name)
    assert outcome == {"job": name, "outcome": "ran", "result": {"calls": 1}}
    row = PeriodicJob.objects.get(name=name)
    assert row.runs == 1 and row.failures == 0 and row.last_error == ""
    assert row.last_finished_at >= row.last_started_at >= before
    assert row.booked_task_id != first
    (task_row,) = booked_rows(name)
    assert str(task_row.pk) == row.booked_task_id
    assert task_row.run_after == row.next_run_at
    assert row.next_run_at - row.last_started_at == timedelta(seconds=60)
    # The old booking running again (a duplicate delivery of the task) does nothing.
    assert periodic.run_booked(name, task_id=first)["outcome"] == "not_booked"
    assert test_jobs.CALLS == ["record"]


def test_booked_run_that_is_not_due_keeps_the_schedule(db, db_backend, registry):
    name = registry("test.early", interval=60)
    periodic.ensure_booked([name])
    call_command("run_periodic", "--job", name, stdout=StringIO())  # cron ran it
    next_run = PeriodicJob.objects.get(name=name).next_run_at
    assert run_booking(name) == {"job": name, "outcome": "not_due"}
    row = PeriodicJob.objects.get(name=name)
    assert row.runs == 1 and row.next_run_at == next_run
    (task_row,) = booked_rows(name)
    assert task_row.run_after == next_run and str(task_row.pk) == row.booked_task_id


def test_failing_job_records_its_error_and_keeps_its_schedule(db, db_backend, registry):
    name = registry("test.fail", interval=30, func="tests.operations.jobs.explode")
    periodic.ensure_booked([name])
    outcome = run_booking(name)
    assert outcome["outcome"] == "failed"
    row = PeriodicJob.objects.get(name=name)
    assert row.failures == 1 and row.runs == 0
    assert row.last_error == "RuntimeError: the mailbox was unreachable"  # one line
    assert row.last_finished_at is not None
    (task_row,) = booked_rows(name)  # the next run is booked all the same
    assert str(task_row.pk) == row.booked_task_id
    # The next run fails again, and the schedule still holds.
    PeriodicJob.objects.filter(name=name).update(next_run_at=timezone.now())
    assert run_booking(name)["outcome"] == "failed"
    assert PeriodicJob.objects.get(name=name).failures == 2
    assert len(booked_rows(name)) == 1


@pytest.mark.parametrize("how", ["deleted", "finished", "left_running"])
def test_vanished_or_dead_booking_is_booked_again(db, db_backend, registry, how):
    name = registry(f"test.vanish-{how.replace('_', '-')}")
    periodic.ensure_booked([name])
    old = PeriodicJob.objects.get(name=name).booked_task_id
    task_rows = DBTaskResult.objects.filter(pk=old)
    if how == "deleted":
        task_rows.delete()
    elif how == "finished":
        task_rows.update(status=TaskResultStatus.SUCCESSFUL, finished_at=timezone.now())
    else:  # a worker took it and died before booking the next run
        task_rows.update(
            status=TaskResultStatus.RUNNING,
            started_at=timezone.now() - periodic.BOOKING_RUNNING_GRACE * 2,
        )
    assert periodic.ensure_booked([name]) == [name]
    row = PeriodicJob.objects.get(name=name)
    assert row.booked_task_id != old
    (task_row,) = booked_rows(name)
    assert str(task_row.pk) == row.booked_task_id


def test_a_running_booking_within_its_grace_is_left_alone(db, db_backend, registry):
    name = registry("test.taken")
    periodic.ensure_booked([name])
    old = PeriodicJob.objects.get(name=name).booked_task_id
    DBTaskResult.objects.filter(pk=old).update(
        status=TaskResultStatus.RUNNING, started_at=timezone.now()
    )
    assert periodic.ensure_booked([name]) == []
    assert PeriodicJob.objects.get(name=name).booked_task_id == old


def test_a_run_heals_the_other_jobs_bookings(db, db_backend, registry):
    first, second = registry("test.heal-a"), registry("test.heal-b")
    periodic.ensure_booked([first, second])
    DBTaskResult.objects.filter(pk=booked_rows(second)[0].pk).delete()  # lost
    assert run_booking(first)["outcome"] == "ran"
    assert len(booked_rows(second)) == 1
    row = PeriodicJob.objects.get(name=second)
    assert row.booked_task_id == str(booked_rows(second)[0].pk)


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_bookers_book_once(db_backend, registry, monkeypatch):
    """Both read "not booked" before either writes; one booking survives."""
    name = registry("test.race")
    barrier = threading.Barrier(2, timeout=20)
    original = periodic._booking_alive
    local = threading.local()

    def alive_then_wait(row, now):
        result = original(row, now)
        if not getattr(local, "waited", False):
            local.waited = True
            barrier.wait()  # both have seen the row unbooked
        return result

    monkeypatch.setattr(periodic, "_booking_alive", alive_then_wait)
    results, errors = [], []

    def book():
        try:
            results.append(periodic.ensure_booked([name]))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=book) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sorted(results) == [[], [name]]
    (task_row,) = booked_rows(name)  # the loser's task row was rolled back
    assert PeriodicJob.objects.get(name=name).booked_task_id == str(task_row.pk)
    assert len(task_rows(name)) == 1


# -- manage.py run_periodic -----------------------------------------------------------


def test_run_periodic_runs_due_jobs_only(db, registry):
    name = registry("test.cron", interval=3600)
    out = StringIO()
    call_command("run_periodic", stdout=out)
    assert f"{name}: ran" in out.getvalue()
    out = StringIO()
    call_command("run_periodic", "--once", stdout=out)  # not due for an hour
    assert f"{name}: not_due" in out.getvalue()
    assert test_jobs.CALLS == ["record"]
    PeriodicJob.objects.filter(name=name).update(
        next_run_at=timezone.now() - timedelta(seconds=1)
    )
    call_command("run_periodic", stdout=StringIO())
    assert test_jobs.CALLS == ["record", "record"]
    assert PeriodicJob.objects.get(name=name).runs == 2


def test_run_periodic_job_runs_one_now_and_reports_failure(db, registry):
    good = registry("test.now", interval=3600)
    bad = registry("test.now-bad", interval=3600, func="tests.operations.jobs.explode")
    call_command("run_periodic", "--job", good, stdout=StringIO())
    call_command("run_periodic", "--job", good, stdout=StringIO())  # due or not
    assert test_jobs.CALLS == ["record", "record"]
    out = StringIO()
    with pytest.raises(CommandError, match="failed"):
        call_command("run_periodic", "--job", bad, stdout=out)
    assert "RuntimeError: the mailbox was unreachable" in out.getvalue()
    assert PeriodicJob.objects.get(name=bad).failures == 1
    with pytest.raises(CommandError, match="No periodic job named 'nope'"):
        call_command("run_periodic", "--job", "nope")


def test_run_periodic_respects_a_run_in_progress(db, registry):
    name = registry("test.locked", interval=60)
    now = timezone.now()
    PeriodicJob.objects.create(
        name=name, interval_seconds=60, next_run_at=now, last_started_at=now
    )  # a worker is running it (started, not finished)
    out = StringIO()
    call_command("run_periodic", "--job", name, stdout=out)
    assert f"{name}: running" in out.getvalue() and test_jobs.CALLS == []
    # A run older than its timeout is taken as dead: the job runs again.
    PeriodicJob.objects.filter(name=name).update(
        last_started_at=now - timedelta(seconds=periodic.MIN_TIMEOUT_SECONDS + 1)
    )
    call_command("run_periodic", "--job", name, stdout=StringIO())
    assert test_jobs.CALLS == ["record"]


def test_run_periodic_claim_lost_to_another_runner_skips(db, registry, monkeypatch):
    """The claim is a conditional UPDATE: a runner that read the row before
    another one claimed it does not run the job."""
    name = registry("test.claimed", interval=60)
    original = periodic._row

    def row_then_someone_else_claims(job):
        row = original(job)
        PeriodicJob.objects.filter(pk=row.pk).update(last_started_at=timezone.now())
        return row

    monkeypatch.setattr(periodic, "_row", row_then_someone_else_claims)
    assert periodic.run_due([name]) == [{"job": name, "outcome": "busy"}]
    assert test_jobs.CALLS == []


def test_run_periodic_list_and_book(db, registry, settings):
    name = registry("test.listing", interval=90)
    call_command("run_periodic", "--job", name, stdout=StringIO())
    out = StringIO()
    call_command("run_periodic", "--list", stdout=out)
    (line,) = [line for line in out.getvalue().splitlines() if line.startswith(name)]
    assert "every 90s" in line and "runs 1" in line and "next 20" in line
    with pytest.raises(CommandError, match="cannot delay"):
        call_command("run_periodic", "--book")
    settings.TASKS = DB_BACKEND
    out = StringIO()
    call_command("run_periodic", "--book", stdout=out)
    assert name in out.getvalue() and "operations.heartbeat" in out.getvalue()
    assert len(booked_rows(name)) == 1


def test_recover_job_sends_what_no_task_is_sending(project, tool, sandbox, settings):
    """`notifications.recover` (every lease) sends a due delivery whose own task
    never ran (its on_commit enqueue did not happen here), through the sandbox."""
    from notifications.models import Delivery, DeliveryStatus, EventKind, ToolLink
    from notifications.services import event_emit

    settings.SITE_URL = "https://appsec.example.test"
    ToolLink.objects.create(
        project=project, integration=tool, notify_scan_completed=True
    )
    event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={"counts": {}})
    (delivery,) = Delivery.objects.all()
    assert delivery.status == DeliveryStatus.PENDING
    (outcome,) = periodic.run_due(["notifications.recover"])
    assert outcome["outcome"] == "ran" and outcome["result"]["sent"] == 1, outcome
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert len(sandbox.messages()) == 1
