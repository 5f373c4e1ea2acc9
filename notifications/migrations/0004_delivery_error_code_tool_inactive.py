"""A delivery skipped because a security admin deactivated its tool was recorded
with the code "tool_paused"; the code is now "tool_inactive"."""

from django.db import migrations

OLD, NEW = "tool_paused", "tool_inactive"


def forwards(apps, schema_editor):
    Delivery = apps.get_model("notifications", "Delivery")
    Delivery.objects.filter(error_code=OLD).update(error_code=NEW)


def backwards(apps, schema_editor):
    Delivery = apps.get_model("notifications", "Delivery")
    Delivery.objects.filter(error_code=NEW).update(error_code=OLD)


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0003_sendwindow_recoveryschedule"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
