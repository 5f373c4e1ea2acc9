"""End a sign-in lockout from the command line, audited like the page's Unlock."""

from django.core.management.base import BaseCommand, CommandError

from accounts import selectors, services


class Command(BaseCommand):
    help = (
        "Unlock sign-in for a user name, for a client address (--address), or for "
        "everyone (--all), by clearing their failed sign-ins. With no argument, "
        "list the current lockouts."
    )

    def add_arguments(self, parser):
        parser.add_argument("username", nargs="?", help="the user name to unlock")
        parser.add_argument("--address", help="the client IP address to unlock")
        parser.add_argument(
            "--all", action="store_true", help="clear every failed sign-in"
        )

    def handle(self, *args, username=None, address=None, **options):
        everything = options["all"]
        given = sum([username is not None, address is not None, everything])
        if given == 0:
            return self._list()
        if given > 1:
            raise CommandError("Give one of: a user name, --address or --all.")
        try:
            count = services.sign_in_unlock(
                username=username,
                ip_address=address,
                everything=everything,
                via="manage.py unlock_sign_in",
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if everything:
            what = "everyone"
        elif username is not None:
            what = f"the user name {username!r}"
        else:
            what = f"the address {address}"
        if count:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Unlocked sign-in for {what} ({count} failed sign-in "
                    f"record{'s' if count != 1 else ''} cleared)."
                )
            )
        else:
            self.stdout.write(f"No failed sign-ins recorded for {what}: nothing to do.")

    def _list(self):
        lockouts = selectors.sign_in_lockouts()
        if not lockouts:
            self.stdout.write("Nobody is locked out.")
        for lockout in lockouts:
            self.stdout.write(
                f"{lockout.kind}\t{lockout.value}\t{lockout.failures} failures\t"
                f"unlocks at {lockout.unlocks_at:%Y-%m-%d %H:%M:%S %Z}"
            )
