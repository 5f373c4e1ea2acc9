"""Set-based writes whose query count does not grow with the number of rows.

Django caps SQLite statements at 999 parameters, so `bulk_create` of 20,000 findings
would be ~300 INSERTs. On SQLite we instead pass all rows as one JSON parameter and let
`json_each()` expand it (https://sqlite.org/json1.html#jeach): one statement for any
number of rows. Other databases have no such cap and use `bulk_create` / `update` in
batches of IMPORT_BATCH_SIZE.
"""

from __future__ import annotations

import json

from django.db import connection, models
from django.db.models.expressions import RawSQL

IMPORT_BATCH_SIZE = 5000


def _use_json_each() -> bool:
    return connection.vendor == "sqlite"


def rows_insert(
    model: type[models.Model], rows: list[dict], *, constants: dict
) -> None:
    """Insert `rows` (dicts of field name -> JSON-able value), each plus `constants`.

    Does not return primary keys; read them back with a query on a column the caller
    knows (e.g. `first_seen_scan`).
    """
    if not rows:
        return
    if not _use_json_each():
        objs = [model(**constants, **row) for row in rows]
        model.objects.bulk_create(objs, batch_size=IMPORT_BATCH_SIZE)
        return

    qn = connection.ops.quote_name
    row_fields = list(rows[0])
    columns, select, params = [], [], []
    for name, value in constants.items():
        field = model._meta.get_field(name)
        columns.append(qn(field.column))
        select.append("%s")
        if isinstance(value, models.Model):
            value = value.pk
        params.append(field.get_db_prep_save(value, connection))
    for name in row_fields:
        field = model._meta.get_field(name)
        columns.append(qn(field.column))
        # Field names are our own identifiers, never user input.
        select.append(f"json_extract(value, '$.{name}')")
    sql = (
        f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(columns)}) "
        f"SELECT {', '.join(select)} FROM json_each(%s)"
    )
    params.append(json.dumps(rows, ensure_ascii=False))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def ids_update(queryset: models.QuerySet, ids: list[int], **values) -> None:
    """`queryset.filter(pk__in=ids).update(**values)` in one statement on SQLite."""
    if not ids:
        return
    if _use_json_each():
        subquery = RawSQL("SELECT value FROM json_each(%s)", (json.dumps(list(ids)),))
        queryset.filter(pk__in=subquery).update(**values)
        return
    ids = list(ids)
    for start in range(0, len(ids), IMPORT_BATCH_SIZE):
        queryset.filter(pk__in=ids[start : start + IMPORT_BATCH_SIZE]).update(**values)
