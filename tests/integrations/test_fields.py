"""Encryption at rest, key rotation and the production key check."""

import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet, MultiFernet
from django.core.management import call_command
from django.db import connection

from integrations import fields
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


@pytest.fixture
def count_decryptions(monkeypatch):
    """How many times a stored value is really decrypted (MultiFernet.decrypt)."""
    calls = []
    real = MultiFernet.decrypt

    def counting(self, token, ttl=None):
        calls.append(token)
        return real(self, token, ttl)

    monkeypatch.setattr(MultiFernet, "decrypt", counting)
    return calls


def test_a_claimed_batch_decrypts_its_tools_secrets_once_not_per_row(
    project, count_decryptions
):
    from notifications.models import EventKind, ToolLink
    from notifications.services import event_emit
    from notifications.services.delivery import deliveries_claim

    tool = Integration.objects.create(
        provider="smtp",
        state="active",
        secrets={"client_secret": "abc"},
        token_cache='{"AccessToken": {}}' + " " * 4000,
    )
    ToolLink.objects.create(
        project=project,
        integration=tool,
        notify_scan_completed=True,
        recipients=["a@contoso.example"],
    )
    for _ in range(25):
        event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})
    fields._decrypt.cache_clear()  # as in a worker that has read nothing yet
    count_decryptions.clear()

    batch = deliveries_claim(worker="w", limit=25)

    assert len(batch) == 25
    # Each delivery's row of the tool holds the same two tokens: two decryptions.
    assert len(count_decryptions) == 2
    assert {d.integration.secrets["client_secret"] for d in batch} == {"abc"}
    # The rows share the tool, loaded once: what one send writes to it (its token
    # cache) the next row's send sees.
    assert len({id(d.integration) for d in batch}) == 1


def test_a_changed_secret_is_read_at_once(count_decryptions):
    integration = Integration.objects.create(provider="x", secrets={"a": "1"})
    for _ in range(3):
        assert Integration.objects.get(pk=integration.pk).secrets == {"a": "1"}
    assert len(count_decryptions) == 1

    # Written the way token stores write (UPDATE, so updated_at does not move).
    Integration.objects.filter(pk=integration.pk).update(secrets={"a": "2"})

    assert Integration.objects.get(pk=integration.pk).secrets == {"a": "2"}
    assert len(count_decryptions) == 2


def test_a_decrypted_value_is_not_kept_for_other_keys(settings):
    integration = Integration.objects.create(provider="x", secrets={"a": "b"})
    assert Integration.objects.get(pk=integration.pk).secrets == {"a": "b"}

    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    with pytest.raises(DecryptionError):
        Integration.objects.get(pk=integration.pk)
