"""Settings for the test suite: development defaults, isolated state."""

import os
import tempfile

os.environ["DJANGO_READ_DOT_ENV_FILE"] = "False"
os.environ.setdefault("DEBUG", "True")
os.environ.setdefault("VAR_DIR", tempfile.mkdtemp(prefix="m365-tests-var-"))

from config.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}

# A file, not SQLite's shared-cache memory database: threads in tests (concurrent
# token refreshes, the live server) then lock the way separate processes do, with
# the busy timeout and IMMEDIATE transactions, instead of failing at once with
# "database table is locked".
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"].setdefault("TEST", {})["NAME"] = os.path.join(  # noqa: F405
        os.environ["VAR_DIR"], "test-db.sqlite3"
    )
