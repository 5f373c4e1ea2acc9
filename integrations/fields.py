"""
Model fields whose values are encrypted at rest with Fernet (via `cryptography`).

Keys come from `settings.FIELD_ENCRYPTION_KEYS`: the first encrypts, every key
decrypts (MultiFernet), so a new key can be put first and old rows re-encrypted with
`manage.py rotate_encryption_keys`. The values are never shown by the Django admin:
`formfield()` returns None so admin forms and model forms leave them out.
"""

import json
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


@lru_cache(maxsize=4)
def _multifernet(keys: tuple) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS is empty.")
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS must be a comma-separated list of Fernet keys "
            "(32 url-safe base64-encoded bytes each)."
        ) from exc


def fernet() -> MultiFernet:
    """The MultiFernet for the keys configured now (read at call time)."""
    return _multifernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


@lru_cache(maxsize=32)
def _decrypt(keys: tuple, token: str) -> str:
    """The plain text of a stored token, decrypted once per token and key set.

    Every row of a batch that loads the same tool (a claim selects each delivery's
    integration) holds the same tokens, so each is decrypted once, not once per row.
    A changed value is a new token (Fernet encrypts with a fresh IV and timestamp),
    so it is never answered from here; neither is a token under other keys. The
    process holds the keys themselves, so keeping a few plain values adds nothing
    a memory reader could not get anyway; nothing is cached when decryption fails.
    """
    return _multifernet(keys).decrypt(token.encode()).decode()


class DecryptionError(Exception):
    """A stored value could not be decrypted with any configured key."""


class EncryptedTextField(models.TextField):
    """A text value stored as a Fernet token. Empty strings are stored as empty."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("blank", True)
        kwargs.setdefault("default", "")
        kwargs["editable"] = False
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs.pop("editable", None)
        return name, path, args, kwargs

    def from_db_value(self, value, expression, connection):
        if not value:
            return self.empty_value()
        try:
            plain = _decrypt(tuple(settings.FIELD_ENCRYPTION_KEYS), value)
        except InvalidToken as exc:
            raise DecryptionError(
                f"{self.model.__name__}.{self.name} cannot be decrypted with any key "
                "in FIELD_ENCRYPTION_KEYS."
            ) from exc
        return self.from_plaintext(plain)

    def get_prep_value(self, value):
        value = self.to_plaintext(value)
        if not value:
            return ""
        return fernet().encrypt(value.encode()).decode()

    def formfield(self, **kwargs):
        return None

    # Hooks for subclasses that store something other than text.
    def empty_value(self):
        return ""

    def from_plaintext(self, plain):
        return plain

    def to_plaintext(self, value):
        return value or ""


class EncryptedJSONField(EncryptedTextField):
    """A dict stored as encrypted JSON. Used for a provider's secret values."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("default", dict)
        super().__init__(*args, **kwargs)

    def empty_value(self):
        return {}

    def from_plaintext(self, plain):
        return json.loads(plain)

    def to_plaintext(self, value):
        return json.dumps(value, sort_keys=True) if value else ""


def encrypted_fields():
    """Every (model, [field names]) pair with encrypted fields, for key rotation."""
    for model in apps.get_models():
        names = [
            f.name
            for f in model._meta.concrete_fields
            if isinstance(f, EncryptedTextField)
        ]
        if names:
            yield model, names
