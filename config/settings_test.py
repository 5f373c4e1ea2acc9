"""Settings for the test suite: development defaults, isolated state."""

import os
import tempfile

os.environ.setdefault("DEBUG", "True")
os.environ.setdefault("VAR_DIR", tempfile.mkdtemp(prefix="m365-tests-var-"))

from config.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
