from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0005_delivery_pacing"),
    ]

    operations = [
        migrations.AddField(
            model_name="delivery",
            name="claimed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="delivery",
            name="throttle_count",
            field=models.PositiveIntegerField(default=0),
        ),
    ]
