"""Per-mailbox pacing as a token bucket in one row per (tool, mailbox): the sliding
window of submission times (`SendWindow`, a list as long as the budget) goes; its
rows only held the last minute's timestamps, so nothing is carried over."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0002_oauthauthorization"),
        ("notifications", "0004_delivery_error_code_tool_inactive"),
    ]

    operations = [
        migrations.DeleteModel(name="SendWindow"),
        migrations.CreateModel(
            name="MailboxBudget",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True,
                        primary_key=True,
                        serialize=False,
                        verbose_name="ID",
                    ),
                ),
                ("mailbox", models.CharField(max_length=254)),
                ("rate", models.FloatField(default=0.0)),
                ("capacity", models.FloatField(default=0.0)),
                ("tokens", models.FloatField(default=0.0)),
                ("tokens_at", models.FloatField(blank=True, null=True)),
                ("rate_factor", models.FloatField(default=1.0)),
                ("rate_factor_at", models.FloatField(default=0.0)),
                ("rate_step", models.FloatField(default=0.1)),
                ("resume_at", models.FloatField(default=0.0)),
                ("in_flight", models.JSONField(blank=True, default=dict)),
                (
                    "integration",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="integrations.integration",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("integration", "mailbox"),
                        name="notifications_mailboxbudget_unique",
                    )
                ],
            },
        ),
    ]
