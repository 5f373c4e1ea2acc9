"""Re-encrypt every stored secret under the first key of FIELD_ENCRYPTION_KEYS."""

from django.core.management.base import BaseCommand
from django.db import transaction

from integrations.fields import encrypted_fields


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted field under the newest key (the first of "
        "FIELD_ENCRYPTION_KEYS). Run it after putting a new key first; once it has "
        "run, older keys can be removed from the list."
    )

    @transaction.atomic
    def handle(self, *args, **options):
        total = 0
        for model, names in encrypted_fields():
            # Reading decrypts with whichever key matches; writing encrypts with the
            # first key. update() avoids save() side effects (timestamps, signals).
            for pk, *values in model._base_manager.values_list("pk", *names).iterator():
                model._base_manager.filter(pk=pk).update(
                    **dict(zip(names, values, strict=True))
                )
                total += 1
        self.stdout.write(f"Re-encrypted {total} row(s) under the newest key.")
