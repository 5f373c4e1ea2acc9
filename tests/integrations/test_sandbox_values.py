"""What bin/run prints to paste into the drawers (manage.py sandbox_values)."""

from io import StringIO

from django.core.management import call_command

from sandbox import seed


def printed() -> list[str]:
    out = StringIO()
    call_command("sandbox_values", stdout=out)
    return out.getvalue().splitlines()


def block(lines: list[str], head: str) -> dict[str, str]:
    """The `label value` rows under the heading that starts with `head`."""
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {head}"))
    rows = {}
    for line in lines[start + 1 :]:
        if not line.startswith("    "):
            break
        label, _, value = line.strip().partition("  ")
        rows[label.strip()] = value.strip()
    return rows


def test_azure_mail_values_are_under_the_drawer_s_labels():
    rows = block(printed(), "Microsoft Azure Mail")
    assert rows == {
        "Tenant ID": seed.TENANT_ID,
        "Client ID": seed.CLIENT_ID,
        "Client Secret": seed.CLIENT_SECRET,
        "From": seed.SENDER,
        "To": seed.RECIPIENT,
    }


def test_smtp_application_sends_from_the_sender_mailbox():
    rows = block(printed(), "SMTP, Authentication type OAuth 2.0 (application)")
    assert rows["From address"] == seed.SENDER and rows["To"] == seed.RECIPIENT


def test_smtp_delegated_username_and_from_are_the_sandbox_user():
    lines = printed()
    head = "SMTP, Authentication type OAuth 2.0 (delegated: a user signs in)"
    assert any(
        line.startswith(f"  {head}")
        and line.endswith("Username and From address are the sandbox user")
        for line in lines
    )
    rows = block(lines, head)
    assert rows["Username"] == rows["From address"] == seed.USER
    assert rows["To"] == seed.RECIPIENT


def test_smtp_basic_signs_in_as_the_sandbox_user():
    rows = block(printed(), "SMTP, Authentication type Basic")
    assert rows["Username"] == rows["From address"] == seed.USER
    assert rows["Password"] == seed.PASSWORD


def test_the_smtp_host_stays_exchange_online_s():
    text = "\n".join(printed())
    assert (
        "keep SMTP host smtp.office365.com (the development settings send it to "
        "the sandbox)" in text
    )
    assert "sender" not in text and "recipient" not in text  # the seed's keys


def test_bin_run_prints_them():
    from pathlib import Path

    run = (Path(__file__).resolve().parents[2] / "bin" / "run").read_text()
    assert "$py manage.py sandbox_values" in run


def test_the_email_box_line_names_the_imap_server_the_settings_point_at(settings):
    settings.M365_IMAP_HOST, settings.M365_IMAP_PORT = "127.0.0.1", 8993
    (line,) = [line for line in printed() if line.startswith("  Email box")]
    assert line.endswith("IMAP at 127.0.0.1:8993)")
