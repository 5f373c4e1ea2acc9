"""Set-based SQL for scan imports: a constant number of statements for any file size.

An import streams its results into a temporary staging table (`ImportStage`), one row
per identity with the number of times it occurred, and then compares the whole table
with the project's findings in a fixed number of INSERT ... SELECT and UPDATE
statements. Neither the results nor the existing findings are ever all in Python.

Filling the stage is one statement however many results there are, and it consumes
the results as they are read:

- SQLite: one `executemany` of an upsert (`ON CONFLICT (identity) DO UPDATE SET
  occurrences = occurrences + 1`, https://sqlite.org/lang_upsert.html) over a
  generator. It runs in the sqlite3 module's C loop; Django's own `executemany`
  is bypassed because it buffers a generator whole (it `tee`s it to peek at the first
  row).
- PostgreSQL: one `COPY ... FROM STDIN` (https://www.postgresql.org/docs/current/
  sql-copy.html) into an unindexed table; COPY cannot upsert, so classify() then
  keeps each identity's first row with its count (one INSERT ... SELECT ... GROUP BY).

Both are logged like any query (CaptureQueriesContext sees them), although Django's
debug cursor does not wrap them itself.

Table and column names come from the models; values are always parameters.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import datetime

from django.db import DatabaseError, connection
from django.db.backends.utils import CursorDebugWrapper

from projects.models import Finding, FindingStatus, FindingStatusChange

STAGE = "projects_import_stage"
# PostgreSQL only: where COPY writes, before duplicates are merged into STAGE.
STAGE_RAW = "projects_import_raw"

# The staged columns, in the order of the rows given to `ImportStage.fill`.
RESULT_COLUMNS = (
    "seq",
    "identity",
    "tool_name",
    "category",
    "rule_id",
    "rule_name",
    "message",
    "severity",
    "path",
    "start_line",
    "start_column",
    "logical_location",
)
# Copied as they are from the stage into new findings.
_FINDING_COLUMNS = (
    "tool_name",
    "category",
    "rule_id",
    "rule_name",
    "message",
    "severity",
    "path",
    "start_line",
    "start_column",
    "logical_location",
    "occurrences",
)
# What a finding seen again takes from its latest result: where and how it was last
# reported. Severity is kept as it was triaged and notified.
_REFRESHED_COLUMNS = (
    "rule_name",
    "message",
    "path",
    "start_line",
    "start_column",
    "logical_location",
    "occurrences",
)


def _qn(name: str) -> str:
    return connection.ops.quote_name(name)


def _table(model) -> str:
    return _qn(model._meta.db_table)


def _column(model, name: str) -> str:
    return _qn(model._meta.get_field(name).column)


def _datetime(value: datetime):
    return Finding._meta.get_field("created_at").get_db_prep_save(value, connection)


@contextmanager
def _logged(cursor, sql: str):
    """Record `sql` in connection.queries (and CaptureQueriesContext) when the cursor
    is a debug cursor, for statements Django's cursor does not wrap."""
    if isinstance(cursor, CursorDebugWrapper):
        with cursor.debug_sql(sql, None, many=True):
            yield
    else:
        yield


class ImportStage:
    """One import's results in a temporary table, one row per identity.

    Use as a context manager: the table is created on entry and dropped on exit. The
    table lives in the connection's session (TEMP), so imports on other connections
    never see it; it is created outside the import's transaction, so that reading a
    large file does not hold the project's lock (or, on SQLite, the database's write
    lock) while it is parsed.
    """

    def __init__(self):
        self.vendor = connection.vendor

    # -- lifetime ------------------------------------------------------------------

    def __enter__(self) -> ImportStage:
        integer = "bigint" if self.vendor == "postgresql" else "integer"
        columns = ", ".join(
            [
                f"seq {integer} NOT NULL",
                "identity varchar(64) NOT NULL PRIMARY KEY",
                "tool_name text NOT NULL",
                "category text NOT NULL",
                "rule_id text NOT NULL",
                "rule_name text NOT NULL",
                "message text NOT NULL",
                "severity text NOT NULL",
                "path text NOT NULL",
                f"start_line {integer}",
                f"start_column {integer}",
                "logical_location text NOT NULL",
                f"occurrences {integer} NOT NULL DEFAULT 1",
                # Filled by classify(): the existing finding and its status.
                f"finding_id {integer}",
                "old_status text",
            ]
        )
        with connection.cursor() as cursor:
            # A stage left by an import that died on this connection goes first.
            cursor.execute(self._drop_sql())
            cursor.execute(f"CREATE TEMPORARY TABLE {_qn(STAGE)} ({columns})")
            if self.vendor == "postgresql":
                raw = ", ".join(
                    f"{name} {integer}"
                    if name in ("seq", "start_line", "start_column")
                    else f"{name} text"
                    for name in RESULT_COLUMNS
                )
                cursor.execute(f"CREATE TEMPORARY TABLE {_qn(STAGE_RAW)} ({raw})")
        return self

    def __exit__(self, exc_type, exc, tb):
        if connection.needs_rollback:
            # Inside a broken transaction; its rollback, or the next import, drops it.
            return
        try:
            with connection.cursor() as cursor:
                cursor.execute(self._drop_sql())
        except DatabaseError:
            if exc_type is None:
                raise
            # Keep the import's own error; the next import drops the table first.

    def _drop_sql(self) -> str:
        # Qualified by the temporary schema: never a table of the database itself.
        if self.vendor == "postgresql":
            tables = [f"pg_temp.{_qn(STAGE)}", f"pg_temp.{_qn(STAGE_RAW)}"]
        else:
            tables = [f"temp.{_qn(STAGE)}"]
        return f"DROP TABLE IF EXISTS {', '.join(tables)}"

    # -- filling -------------------------------------------------------------------

    def fill(self, rows: Iterable[tuple]) -> None:
        """Stage `rows` (tuples in RESULT_COLUMNS order, `seq` ascending), consumed
        one at a time: the first row of an identity wins, the others are counted in
        its `occurrences`."""
        names = ", ".join(RESULT_COLUMNS)
        with connection.cursor() as cursor:
            if self.vendor == "postgresql":
                self._copy(cursor, names, rows)
                return
            marks = ", ".join("?" * len(RESULT_COLUMNS))
            sql = (
                f"INSERT INTO {_qn(STAGE)} ({names}) VALUES ({marks}) "  # nosec B608  # quoted model names, values as parameters
                "ON CONFLICT (identity) DO UPDATE SET occurrences = occurrences + 1"
            )
            # Outside a transaction, each row would be committed on its own (several
            # times slower). A deferred transaction that writes only the TEMP table
            # takes no lock on the main database, so other writers are not held up
            # while the file is read. It is ended here, before any other query.
            own = connection.get_autocommit() and not connection.in_atomic_block
            raw = cursor.cursor
            with _logged(cursor, sql), connection.wrap_database_errors:
                if own:
                    raw.execute("BEGIN DEFERRED")
                try:
                    # sqlite3's own executemany: it reads the generator row by row.
                    sqlite3.Cursor.executemany(raw, sql, rows)
                except BaseException:
                    if own:
                        raw.execute("ROLLBACK")
                    raise
                if own:
                    raw.execute("COMMIT")

    def _copy(self, cursor, names: str, rows: Iterable[tuple]) -> None:
        # Duplicates are merged by classify(), in the import's transaction.
        copy_sql = f"COPY {_qn(STAGE_RAW)} ({names}) FROM STDIN"
        with _logged(cursor, copy_sql), connection.wrap_database_errors:
            with cursor.cursor.copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)

    # -- comparing with the project's findings -------------------------------------

    def classify(self, *, project_id: int) -> None:
        """Note, for each staged identity, the project's finding and its status.

        On PostgreSQL this is also where the copied rows are merged: one row per
        identity, the first one, with the number of times it occurred.
        """
        finding = _table(Finding)
        fid, fstatus = _column(Finding, "id"), _column(Finding, "status")
        fproject = _column(Finding, "project")
        fprint = _column(Finding, "fingerprint")
        with connection.cursor() as cursor:
            if self.vendor == "postgresql":
                names = ", ".join(RESULT_COLUMNS)
                raw = ", ".join(f"r.{name}" for name in RESULT_COLUMNS)
                # Each identity's first row, and how many rows it has.
                cursor.execute(
                    f"INSERT INTO {_qn(STAGE)} "  # nosec B608  # quoted model names, values as parameters
                    f"({names}, occurrences, finding_id, old_status) "
                    f"SELECT {raw}, g.occurrences, f.{fid}, f.{fstatus} FROM ("
                    "SELECT min(seq) AS seq, count(*) AS occurrences "
                    f"FROM {_qn(STAGE_RAW)} GROUP BY identity) AS g "
                    f"JOIN {_qn(STAGE_RAW)} AS r ON r.seq = g.seq "
                    f"LEFT JOIN {finding} AS f "
                    f"ON f.{fproject} = %s AND f.{fprint} = r.identity",
                    [project_id],
                )
            else:
                # Row values rather than UPDATE ... FROM, which needs SQLite 3.33.
                cursor.execute(
                    f"UPDATE {_qn(STAGE)} SET (finding_id, old_status) = ("  # nosec B608  # quoted model names, values as parameters
                    f"SELECT f.{fid}, f.{fstatus} FROM {finding} AS f "
                    f"WHERE f.{fproject} = %s AND f.{fprint} = {_qn(STAGE)}.identity)",
                    [project_id],
                )

    def insert_new(self, *, project_id: int, scan_id: int, now: datetime) -> None:
        """Create a finding, Open, for each staged identity the project lacks, in the
        order the file first reported them."""
        columns = [_column(Finding, name) for name in _FINDING_COLUMNS]
        constants = ["project", "fingerprint", "status"]
        constants += ["first_seen_scan", "last_seen_scan", "created_at", "updated_at"]
        target = ", ".join(columns + [_column(Finding, name) for name in constants])
        when = _datetime(now)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {_table(Finding)} ({target}) "  # nosec B608  # quoted model names, values as parameters
                f"SELECT {', '.join(_FINDING_COLUMNS)}, %s, identity, %s, %s, %s, %s, %s "
                f"FROM {_qn(STAGE)} WHERE finding_id IS NULL ORDER BY seq",
                [project_id, FindingStatus.OPEN, scan_id, scan_id, when, when],
            )

    def record_status_changes(
        self,
        *,
        project_id: int,
        scan_id: int,
        scopes: list[tuple[str, str]],
        resolvable: Iterable[str],
        now: datetime,
    ) -> None:
        """Insert the import's FindingStatusChange rows, after update_seen() and
        before resolve_recorded(): Resolved -> Re-opened for each staged finding
        that was Resolved, and <status> -> Resolved for each finding in a
        `resolvable` status, of a (tool, category) in `scopes`, that this scan did
        not see."""
        change = _table(FindingStatusChange)
        columns = ", ".join(
            _column(FindingStatusChange, name)
            # No actor: the import made the change.
            for name in ("finding", "from_status", "to_status", "scan", "created_at")
        )
        f = {
            name: "f." + _column(Finding, name)
            for name in ("id", "status", "project", "tool_name", "category")
        }
        last_seen = "f." + _column(Finding, "last_seen_scan")
        resolvable = list(resolvable)
        statuses = ", ".join(["%s"] * len(resolvable))
        when = _datetime(now)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {change} ({columns}) "  # nosec B608  # quoted model names, values as parameters
                f"SELECT finding_id, old_status, %s, %s, %s FROM {_qn(STAGE)} "
                "WHERE old_status = %s "
                "UNION ALL "
                f"SELECT {f['id']}, {f['status']}, %s, %s, %s "
                f"FROM {_table(Finding)} AS f "
                f"WHERE {f['project']} = %s AND {f['status']} IN ({statuses}) "
                f"AND ({f['tool_name']}, {f['category']}) IN ({self._scopes_sql()}) "
                # update_seen() gave every finding of the stage this scan: any other
                # was not seen (a deleted scan leaves NULL).
                f"AND ({last_seen} IS NULL OR {last_seen} <> %s)",
                [
                    FindingStatus.REOPENED,
                    scan_id,
                    when,
                    FindingStatus.RESOLVED,
                    FindingStatus.RESOLVED,
                    scan_id,
                    when,
                    project_id,
                    *resolvable,
                    json.dumps([list(scope) for scope in scopes], ensure_ascii=False),
                    scan_id,
                ],
            )

    def _scopes_sql(self) -> str:
        # (tool, category) pairs as one JSON parameter: [["CodeQL", "js"], ...].
        if self.vendor == "postgresql":
            return "SELECT x->>0, x->>1 FROM jsonb_array_elements(%s::jsonb) AS x"
        return (
            "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') "
            "FROM json_each(%s)"
        )

    def update_seen(self, *, project_id: int, scan_id: int, now: datetime) -> None:
        """Mark every staged finding seen by this scan, Re-open the Resolved ones,
        and refresh where they were reported."""
        finding = _table(Finding)
        fproject = _column(Finding, "project")
        fprint = _column(Finding, "fingerprint")
        fstatus = _column(Finding, "status")
        refreshed = [_column(Finding, name) for name in _REFRESHED_COLUMNS]
        reopen = (
            f"{fstatus} = CASE WHEN {fstatus} = %s THEN %s ELSE {fstatus} END, "
            f"{_column(Finding, 'last_seen_scan')} = %s, "
            f"{_column(Finding, 'updated_at')} = %s"
        )
        params = [FindingStatus.RESOLVED, FindingStatus.REOPENED, scan_id]
        params += [_datetime(now), project_id]
        with connection.cursor() as cursor:
            if self.vendor == "postgresql":
                assignments = ", ".join(
                    f"{column} = s.{name}"
                    for column, name in zip(refreshed, _REFRESHED_COLUMNS, strict=True)
                )
                cursor.execute(
                    f"UPDATE {finding} SET {reopen}, {assignments} "  # nosec B608  # quoted model names, values as parameters
                    f"FROM {_qn(STAGE)} AS s WHERE {finding}.{fproject} = %s "
                    f"AND {finding}.{_column(Finding, 'id')} = s.finding_id",
                    params,
                )
            else:
                cursor.execute(
                    f"UPDATE {finding} SET {reopen}, ({', '.join(refreshed)}) = ("  # nosec B608  # quoted model names, values as parameters
                    f"SELECT {', '.join(_REFRESHED_COLUMNS)} FROM {_qn(STAGE)} AS s "
                    f"WHERE s.identity = {finding}.{fprint}) "
                    f"WHERE {fproject} = %s AND {fprint} IN ("
                    f"SELECT identity FROM {_qn(STAGE)} WHERE finding_id IS NOT NULL)",
                    params,
                )

    def resolve_recorded(self, *, scan_id: int, now: datetime) -> None:
        """Resolve the findings record_status_changes() recorded as resolved."""
        change = _table(FindingStatusChange)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {_table(Finding)} SET {_column(Finding, 'status')} = %s, "  # nosec B608  # quoted model names, values as parameters
                f"{_column(Finding, 'updated_at')} = %s "
                f"WHERE {_column(Finding, 'id')} IN ("
                f"SELECT {_column(FindingStatusChange, 'finding')} FROM {change} "
                f"WHERE {_column(FindingStatusChange, 'scan')} = %s "
                f"AND {_column(FindingStatusChange, 'to_status')} = %s)",
                [
                    FindingStatus.RESOLVED,
                    _datetime(now),
                    scan_id,
                    FindingStatus.RESOLVED,
                ],
            )

    # -- reading the outcome -------------------------------------------------------

    def totals(self) -> list[tuple[str, int, int, int, int]]:
        """Per severity: (severity, identities, results, new, re-opened)."""
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT severity, COUNT(*), SUM(occurrences), "  # nosec B608  # quoted model names, values as parameters
                "SUM(CASE WHEN finding_id IS NULL THEN 1 ELSE 0 END), "
                "SUM(CASE WHEN old_status = %s THEN 1 ELSE 0 END) "
                f"FROM {_qn(STAGE)} GROUP BY severity",
                [FindingStatus.RESOLVED],
            )
            return [
                (severity, int(count), int(results), int(new), int(reopened))
                for severity, count, results, new, reopened in cursor.fetchall()
            ]
