"""The shapes of the HTTP API: what projects/api.py reads and answers.

Validators raise `PydanticCustomError(code, message)`: config/api.py turns the first
one into the documented error, `{"error": {"code": code, "message": message}}`, so
`code` is one of the API's stable error codes and `message` says what to fix.
"""

from datetime import datetime
from typing import Annotated

from django.http import Http404
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from ninja import Schema
from pydantic import (
    AliasPath,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError, PydanticUseDefault

from projects.converters import decimal_id
from projects.models import FindingStatus, ScanSource, ScanStatus, Severity

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_OFFSET = 10**9

# Written as datetime.isoformat() gives it ("2025-01-31T09:30:00.123456+00:00"), not
# as Django's JSON encoder would (milliseconds, "Z").
Timestamp = Annotated[
    datetime,
    PlainSerializer(datetime.isoformat, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


def _choice_or_none(name: str, choices):
    def parse(value):
        if value in (None, ""):
            return None
        if value not in choices.values:
            raise PydanticCustomError(
                "invalid_filter",
                _("“%(name)s” must be one of: %(values)s.")
                % {"name": name, "values": ", ".join(choices.values)},
            )
        return value

    return parse


def _whole_number(name: str, maximum: int):
    """ASCII digits from 0 to `maximum`; an empty value takes the default. Not int():
    it reads "٣" as 3, and takes signs, spaces, underscores and 4,300 digits."""

    def parse(value):
        if value in (None, ""):
            raise PydanticUseDefault()
        number = decimal_id(value) if isinstance(value, str) else None
        if number is None or number > maximum:
            raise PydanticCustomError(
                "invalid_pagination",
                _("“%(name)s” must be a whole number from 0 to %(top)s.")
                % {"name": name, "top": maximum},
            )
        return number

    return parse


def _row_id(not_found: str):
    """A path's row id: 1 to 18 ASCII digits (projects/converters.py)."""

    def parse(value):
        number = decimal_id(value) if isinstance(value, str) else None
        if number is None:
            # Not a validation error but a 404, raised as it is found: the path
            # names no row, whatever else is wrong with the request.
            raise Http404(_(not_found) % {"id": str(value)[:40]})
        return number

    return parse


# 1 to 18 ASCII digits; anything else is a 404.
FindingId = Annotated[
    int,
    BeforeValidator(_row_id(gettext_noop("No finding %(id)s in this project."))),
    WithJsonSchema({"type": "integer", "minimum": 0}),
]
ScanId = Annotated[
    int,
    BeforeValidator(_row_id(gettext_noop("No scan %(id)s in this project."))),
    WithJsonSchema({"type": "integer", "minimum": 0}),
]


class FindingFilters(Schema):
    """The query string of the findings list. Empty values are the defaults."""

    status: Annotated[
        str | None,
        BeforeValidator(_choice_or_none("status", FindingStatus)),
        WithJsonSchema({"type": "string", "enum": FindingStatus.values}),
    ] = None
    severity: Annotated[
        str | None,
        BeforeValidator(_choice_or_none("severity", Severity)),
        WithJsonSchema({"type": "string", "enum": Severity.values}),
    ] = None
    limit: Annotated[int, BeforeValidator(_whole_number("limit", MAX_LIMIT))] = Field(
        DEFAULT_LIMIT, ge=0, le=MAX_LIMIT
    )
    offset: Annotated[int, BeforeValidator(_whole_number("offset", MAX_OFFSET))] = (
        Field(0, ge=0, le=MAX_OFFSET)
    )


class StatusChange(BaseModel):
    """The body of PATCH /projects/{slug}/findings/{id}.

    A plain pydantic model: ninja's Schema hands validators the data wrapped for
    reading Django objects, and this one looks at the JSON as sent.
    """

    status: Annotated[
        str, WithJsonSchema({"type": "string", "enum": FindingStatus.values})
    ]

    @model_validator(mode="before")
    @classmethod
    def _object_with_status_string(cls, data):
        # Whether the status is one the finding may move to is the service's call.
        if not isinstance(data, dict) or not isinstance(data.get("status"), str):
            raise PydanticCustomError(
                "invalid_body",
                _(
                    "Send a JSON object with a “status” string, "
                    'e.g. {"status": "confirmed"}.'
                ),
            )
        return data


class Answer(BaseModel):
    """An answer's shape, read from model instances by attribute.

    Plain pydantic rather than ninja's Schema: Schema reads each attribute through a
    Python wrapper, which makes a page of 500 findings about three times slower.
    """

    model_config = ConfigDict(from_attributes=True)


class ToolNotification(Answer):
    tool: str
    category: str = ""
    message: str


class Scan(Answer):
    id: int
    url: str = Field(
        description="Where to read this scan: GET it until `status` is final."
    )
    project: str = Field(validation_alias=AliasPath("project", "slug"))
    status: ScanStatus = Field(
        description=(
            "`queued` and `processing` until the import is over; then `complete`, "
            "or `failed` with `error` saying what to fix."
        )
    )
    tool_name: str = Field(description="Empty until the import has read the file.")
    tool_version: str
    category: str
    source: ScanSource
    created_at: Timestamp
    started_at: Timestamp | None = Field(
        description="When the worker started a queued import."
    )
    finished_at: Timestamp | None = Field(
        description="When a queued import completed or failed."
    )
    new: int = Field(validation_alias="new_count")
    seen_again: int = Field(validation_alias="seen_again_count")
    resolved: int = Field(validation_alias="resolved_count")
    reopened: int = Field(validation_alias="reopened_count")
    duplicates: int = Field(
        validation_alias="duplicate_count",
        description="Results identical to another one of the file, counted once.",
    )
    incomplete: bool = Field(
        description=(
            "A run failed or sent no results: its tool and category resolved nothing."
        )
    )
    tool_notifications: list[ToolNotification] = Field(
        description="Error-level notifications the tools reported in the file."
    )
    # The row's error is "" unless the import failed.
    error: Annotated[str | None, BeforeValidator(lambda value: value or None)] = Field(
        description="Why the import failed (status `failed`), else null."
    )


class ScanOne(Answer):
    scan: Scan


class Finding(Answer):
    id: int
    fingerprint: str
    tool_name: str
    category: str = Field(description='The scan category it belongs to; `""` for none.')
    rule_id: str = Field(description='`""` when the result named no rule.')
    rule_name: str
    message: str
    severity: Severity
    status: FindingStatus
    path: str = Field(description="Relative to the source root, percent-decoded.")
    start_line: int | None
    start_column: int | None
    logical_location: str = Field(
        description="A fully qualified name, for results without a file location."
    )
    occurrences: int = Field(
        description="How many identical results the last scan reporting it held."
    )
    first_seen_scan_id: int | None
    last_seen_scan_id: int | None
    created_at: Timestamp
    updated_at: Timestamp


class FindingOne(Answer):
    finding: Finding


class FindingPage(Answer):
    count: int
    limit: int
    offset: int
    results: list[Finding]


class ErrorDetail(Answer):
    code: str = Field(description="Stable, for programs: e.g. `token_invalid`.")
    message: str = Field(description="For people: what to fix.")


class Error(Answer):
    """Every error the API answers, whatever the status."""

    error: ErrorDetail
