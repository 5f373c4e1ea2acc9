"""The SMTP envelope with and without PIPELINING (RFC 2920) against the sandbox,
which offers it as Exchange Online does and can withdraw it (PUT /_sandbox/smtp):
the same messages, replies and errors either way."""

import pytest

from integrations.exceptions import IntegrationError
from integrations.providers.base import OutgoingEmail
from integrations.providers.smtp_client import SmtpSession

from .test_smtp import app_provider, email

RECIPIENT_NOT_FOUND = "550 5.1.10 RESOLVER.ADR.RecipientNotFound; not found"


def refuse_one_recipient(sandbox):
    """The sandbox's next RCPT TO is refused, as Exchange refuses an unknown one."""
    sandbox.add_fault(
        target="smtp", smtp_stage="rcpt", smtp_reply=RECIPIENT_NOT_FOUND, count=1
    )


@pytest.fixture(params=[True, False], ids=["pipelining", "one-by-one"])
def pipelining(request, sandbox, ctl):
    ctl("PUT", "smtp", {"pipelining": request.param})
    return request.param


@pytest.fixture
def one_by_one_calls(monkeypatch):
    """Calls of the command-by-command envelope (a spy: each still runs)."""
    calls = []
    for name in ("mail_from", "rcpt_to", "_data_command"):
        real = getattr(SmtpSession, name)

        def spy(self, *args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(SmtpSession, name, spy)
    return calls


def test_the_envelope_and_data_go_in_one_write_only_when_the_server_offers_it(
    sandbox, pipelining, one_by_one_calls
):
    recipient = sandbox.seed["recipient"]
    with app_provider(sandbox).open() as connection:
        for i in range(3):
            connection.send(email([recipient], subject=f"Envelope {i}"))

    assert len(sandbox.messages(to=recipient)) == 3
    if pipelining:
        # MAIL FROM, RCPT TO and DATA in one write, then the content: two round
        # trips a message, not one per command.
        assert one_by_one_calls == []
    else:
        assert one_by_one_calls == ["mail_from", "rcpt_to", "_data_command"] * 3


@pytest.mark.parametrize(
    "stage, reply",
    [
        ("mail", "451 4.3.2 Message submission rate for this client has exceeded"),
        ("rcpt", RECIPIENT_NOT_FOUND),
    ],
)
def test_a_refused_command_is_the_same_error_either_way(
    sandbox, pipelining, stage, reply
):
    recipient = sandbox.seed["recipient"]
    sandbox.add_fault(target="smtp", smtp_stage=stage, smtp_reply=reply, count=1)

    with app_provider(sandbox).open() as connection:
        with pytest.raises(IntegrationError) as refused:
            connection.send(email([recipient], subject="Refused"))
        # The session is still usable: the next message goes out on it.
        connection.send(email([recipient], subject="Next"))

    assert refused.value.code == (
        "throttled" if stage == "mail" else "recipient_rejected"
    )
    assert [m["subject"] for m in sandbox.messages(to=recipient)] == ["Next"]
    assert sandbox.counters()["smtp_sessions"] == 1


def test_one_refused_recipient_of_two_leaves_the_other(sandbox, pipelining):
    seed = sandbox.seed
    refuse_one_recipient(sandbox)
    with app_provider(sandbox).open() as connection:
        connection.send(email(["nobody@contoso.example", seed["recipient"]]))

    (message,) = sandbox.messages(to=seed["recipient"])
    assert message["subject"] == "Hello"


def test_lines_starting_with_a_dot_arrive_intact_either_way(sandbox, pipelining):
    # The content after DATA doubles a leading dot (RFC 5321 4.5.2), and a line
    # of one dot would otherwise end the message early.
    recipient = sandbox.seed["recipient"]
    text = "Before\n.\n.hidden file\n..two dots\nAfter"
    with app_provider(sandbox).open() as connection:
        connection.send(
            OutgoingEmail(to=(recipient,), subject="Dots", text=text, html="")
        )

    (message,) = sandbox.messages(to=recipient)
    assert message["text"].replace("\r\n", "\n").rstrip("\n") == text


def test_data_accepted_after_every_recipient_was_refused_sends_nothing(
    sandbox, monkeypatch
):
    # A server that answers the pipelined DATA with 354 although it refused every
    # recipient (Exchange answers 503): the content is not sent (nothing after 354
    # but the content would be read), the session is dropped, the next message
    # opens another.
    from sandbox.smtp import ExchangeSMTP

    real_data = ExchangeSMTP.smtp_DATA

    async def lax_data(self, arg):
        if not self.envelope.rcpt_tos:
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            return
        await real_data(self, arg)

    monkeypatch.setattr(ExchangeSMTP, "smtp_DATA", lax_data)
    recipient = sandbox.seed["recipient"]
    refuse_one_recipient(sandbox)
    with app_provider(sandbox).open() as connection:
        with pytest.raises(IntegrationError) as refused:
            connection.send(email([recipient], subject="Refused"))
        connection.send(email([recipient], subject="Next"))

    assert refused.value.code == "recipient_rejected"
    assert [m["subject"] for m in sandbox.messages(to=recipient)] == ["Next"]
    assert sandbox.counters()["smtp_sessions"] == 2
