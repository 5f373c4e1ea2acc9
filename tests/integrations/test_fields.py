"""Encryption at rest, key rotation and the production key check."""

import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from integrations.fields import DecryptionError
from integrations.models import Integration

pytestmark = pytest.mark.django_db


def stored(column, pk):
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {column} FROM integrations_integration WHERE id = %s", [pk]
        )
        return cursor.fetchone()[0]


def test_secrets_are_encrypted_at_rest_and_decrypted_on_read():
    integration = Integration.objects.create(
        provider="x", secrets={"client_secret": "abc"}
    )

    raw = stored("secrets", integration.pk)
    assert "abc" not in raw
    assert Integration.objects.get(pk=integration.pk).secrets == {
        "client_secret": "abc"
    }


def test_rotation_reencrypts_under_the_new_key_and_old_key_can_go(settings):
    old = settings.FIELD_ENCRYPTION_KEYS[0]
    integration = Integration.objects.create(
        provider="x", secrets={"client_secret": "abc"}, token_cache="cache"
    )
    before = stored("secrets", integration.pk)
    new = Fernet.generate_key().decode()

    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    assert Integration.objects.get(pk=integration.pk).secrets["client_secret"] == "abc"
    call_command("rotate_encryption_keys", stdout=open(os.devnull, "w"))
    after = stored("secrets", integration.pk)
    assert after != before
    assert Fernet(new.encode()).decrypt(after.encode())

    settings.FIELD_ENCRYPTION_KEYS = [new]
    reloaded = Integration.objects.get(pk=integration.pk)
    assert reloaded.secrets == {"client_secret": "abc"}
    assert reloaded.token_cache == "cache"


def test_a_value_no_key_can_decrypt_is_a_clear_error(settings):
    integration = Integration.objects.create(provider="x", secrets={"a": "b"})
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(DecryptionError, match="FIELD_ENCRYPTION_KEYS"):
        Integration.objects.get(pk=integration.pk)


def test_production_without_keys_refuses_to_start(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "DEBUG")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="False",
        VAR_DIR=str(tmp_path),
        SECRET_KEY="x" * 50,
    )
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        capture_output=True,
        text=True,
        cwd=os.getcwd(),
    )
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEYS is not set" in result.stderr
    assert not any(tmp_path.iterdir())  # no key was generated


def test_development_generates_a_key_once(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings", DEBUG="True", VAR_DIR=str(tmp_path)
    )
    code = "import django; django.setup(); from django.conf import settings; print(settings.FIELD_ENCRYPTION_KEYS[0])"
    first = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    second = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert (tmp_path / "field_encryption_key").exists()
