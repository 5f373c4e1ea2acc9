"""The delivery path on PostgreSQL: claims with row locks and id arrays
(`notifications.lookups.IdIn`), the next batch claimed and the outcomes written on
threads of the run's own, and a batch's emails from one findings query.
tests/notifications/test_emails.py and services/test_delivery_runs.py (the query
counts included) and services/test_throttling.py, run again in a child pytest whose
DATABASE_URL names a throwaway PostgreSQL database."""

import pytest

from tests.processes import pytest_on_postgresql

pytestmark = pytest.mark.services


def test_delivery_on_postgresql(postgres_url, tmp_path):
    pytest_on_postgresql(
        postgres_url,
        tmp_path,
        "tests/notifications/test_emails.py",
        "tests/notifications/services/test_delivery_runs.py",
        "tests/notifications/services/test_throttling.py",
    )
