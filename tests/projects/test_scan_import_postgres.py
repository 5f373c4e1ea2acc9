"""The scan import's set-based SQL on PostgreSQL: tests/projects/test_scan_import.py
(the query counts included) and test_services.py, run again in a child pytest whose
DATABASE_URL names a throwaway PostgreSQL database."""

import pytest

from tests.processes import pytest_on_postgresql

pytestmark = pytest.mark.services


def test_scan_import_on_postgresql(postgres_url, tmp_path):
    pytest_on_postgresql(
        postgres_url,
        tmp_path,
        "tests/projects/test_scan_import.py",
        "tests/projects/test_services.py",
        EXPECT_DATABASE_VENDOR="postgresql",
    )
