"""
The provider registry, built from `settings.NOTIFICATION_TOOL_PROVIDERS` (dotted paths,
in card order). Nothing is discovered by import side effects.
"""

from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from integrations.providers.base import NotificationToolProvider


@lru_cache(maxsize=4)
def _build(paths: tuple[str, ...]) -> dict[str, type[NotificationToolProvider]]:
    registry = {}
    for path in paths:
        cls = import_string(path)
        if not issubclass(cls, NotificationToolProvider):
            raise ImproperlyConfigured(f"{path} is not a NotificationToolProvider.")
        if cls.key in registry:
            raise ImproperlyConfigured(f"Two providers use the key {cls.key!r}.")
        registry[cls.key] = cls
    return registry


def providers() -> dict[str, type[NotificationToolProvider]]:
    """`{key: provider class}` in the order of the setting."""
    return _build(tuple(settings.NOTIFICATION_TOOL_PROVIDERS))


def get_provider_class(key: str) -> type[NotificationToolProvider]:
    """The provider registered under `key`; KeyError when there is none."""
    return providers()[key]
