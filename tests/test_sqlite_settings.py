"""The default database (SQLite) is opened in write-ahead-log mode with
synchronous=NORMAL: the worker's commits do not wait on the disk, and pages read
while it writes (config/settings.py)."""

import pytest
from django.db import connection, connections


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite settings only")
@pytest.mark.django_db
def test_a_sqlite_database_file_is_opened_in_wal_mode(tmp_path):
    wrapper_class = type(connections["default"])
    settings_dict = {**connection.settings_dict, "NAME": str(tmp_path / "db.sqlite3")}
    other = wrapper_class(settings_dict)
    try:
        with other.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            assert cursor.fetchone()[0] == "wal"
            cursor.execute("PRAGMA synchronous")
            assert cursor.fetchone()[0] == 1  # NORMAL
    finally:
        other.close()
