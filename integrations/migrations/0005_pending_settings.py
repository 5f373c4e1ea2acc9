# Save & Authorize keeps an authorized tool as it is until the new sign-in completes:
# the settings it is for wait, encrypted, with the authorization row.

from django.db import migrations

import integrations.fields


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0004_people_audit_actions"),
    ]

    operations = [
        migrations.AddField(
            model_name="oauthauthorization",
            name="pending_settings",
            field=integrations.fields.EncryptedJSONField(blank=True, default=dict),
        ),
    ]
