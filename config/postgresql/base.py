"""Django's PostgreSQL backend, with timestamps parsed by psycopg's optimised loader.

Django 5.2 registers on every psycopg 3 connection a `timestamptz` loader of its own,
which sets Django's time zone on each value; it derives from psycopg's pure-Python
loader (psycopg's optimised one cannot be subclassed), so every timestamp a query
returns is parsed in Python: a claimed batch of 100 deliveries reads about 900 of
them, on the worker's hot path. Django ticket #36960, psycopg issue #1273.

This backend (settings.py uses it for postgres:// URLs) keeps Django's loader, the
same values with the same `timezone`, and has psycopg's optimised loader parse
them. Everything else is Django's backend.
https://docs.djangoproject.com/en/5.2/ref/databases/#subclassing-the-built-in-database-backends
"""

from django.db.backends.postgresql import base
from django.db.backends.postgresql.psycopg_any import is_psycopg3


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        connection = super().get_new_connection(conn_params)
        if is_psycopg3:
            _use_optimised_timestamptz_loader(connection)
        return connection


def _use_optimised_timestamptz_loader(connection) -> None:
    """Register on `connection` a loader that parses like psycopg's optimised one
    (its C version where psycopg has one) and, like Django's, sets the `timezone`
    that Django's registered (None: naive, as Django leaves them)."""
    import psycopg
    from psycopg.adapt import Loader
    from psycopg.pq import Format

    oid = psycopg.adapters.types["timestamptz"].oid
    django_loader = connection.adapters.get_loader(oid, Format.TEXT)
    optimised = psycopg.adapters.get_loader(oid, Format.TEXT)

    class TimestamptzLoader(Loader):
        # Django's cursors compare it with the connection's, as with their own.
        timezone = getattr(django_loader, "timezone", None)

        def __init__(self, oid, context=None):
            super().__init__(oid, context)
            self._parse = optimised(oid, context).load

        def load(self, data):
            return self._parse(data).replace(tzinfo=self.timezone)

    connection.adapters.register_loader("timestamptz", TimestamptzLoader)
