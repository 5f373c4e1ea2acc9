"""Periodic work and worker heartbeats (issue 12)."""

from django.db import models


class PeriodicJob(models.Model):
    """The schedule and last outcome of one registered periodic job
    (`operations.periodic.register`). `next_run_at` is when it is next due;
    `booked_task_id` the one task booked to run it then (empty: none)."""

    name = models.CharField(max_length=100, unique=True)
    interval_seconds = models.FloatField()
    next_run_at = models.DateTimeField(null=True, blank=True)
    booked_task_id = models.CharField(max_length=64, blank=True)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    runs = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class WorkerHeartbeat(models.Model):
    """A task worker process seen alive (`operations.heartbeat.worker_heartbeat`)."""

    worker = models.CharField(max_length=200, unique=True)  # "hostname:pid"
    hostname = models.CharField(max_length=150)
    pid = models.IntegerField()
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-last_seen_at"]

    def __str__(self):
        return self.worker
