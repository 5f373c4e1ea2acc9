"""Create (once) and print the demo security admin used by the run command."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from integrations.permissions import SECURITY_ADMINS_GROUP

USERNAME = "admin"


class Command(BaseCommand):
    help = "Create the demo security admin (DEBUG only) and print its credentials."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("demo_admin is for development (DEBUG on) only.")
        password_file = settings.VAR_DIR / "demo-admin-password"
        User = get_user_model()
        user = User.objects.filter(username=USERNAME).first()
        if user is None or not password_file.exists():
            password = secrets.token_urlsafe(12)
            user = user or User(
                username=USERNAME, email="admin@contoso.onmicrosoft.com"
            )
            user.set_password(password)
            user.is_staff = True
            user.save()
            password_file.write_text(password)
            password_file.chmod(0o600)
        group, _ = Group.objects.get_or_create(name=SECURITY_ADMINS_GROUP)
        user.groups.add(group)
        self.stdout.write(
            f"  Demo security admin: user name {USERNAME!r}, "
            f"password {password_file.read_text()!r}"
        )
