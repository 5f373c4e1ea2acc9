"""`build_message` builds what it built before it was made cheaper: the same MIME
structure, headers, charsets, transfer encodings and decoded bodies, as the email
package (a mail client's view) parses them; and, where the previous builder wrote
something else (`BEFORE_DIFFERED`, `NAMES_BEFORE_SPLIT`), what was meant."""

import re
from email import message_from_bytes
from email import policy as email_policy
from email.header import decode_header, make_header
from email.message import Message
from email.policy import compat32

import pytest

from integrations.providers.base import OutgoingEmail
from integrations.providers.smtp_client import _POLICY, build_message, message_bytes
from integrations.text import single_line
from tests.integrations.providers.smtp_reference import reference_build_message


def decoded(value) -> str:
    """A header value as written, unfolded and RFC 2047 decoded (adjacent encoded
    words joined), as a mail client shows it."""
    unfolded = re.sub(r"\r?\n(?=[ \t])", "", value).strip()
    return str(make_header(decode_header(unfolded)))


def shape(raw: bytes) -> dict:
    """The MIME structure of `raw` as a mail client sees it: each part's header
    names in order, content type and parameters (but the boundary), and each leaf's
    charset, transfer encoding and decoded text. Header values are `header_values`."""
    view = message_from_bytes(raw, policy=email_policy.default)

    def describe(part):
        params = dict(part["Content-Type"].params) if "Content-Type" in part else {}
        params.pop("boundary", None)
        node = {
            "header names": part.keys(),
            "type": part.get_content_type(),
            "params": params,
            "MIME-Version": part.get("MIME-Version"),
        }
        if part.is_multipart():
            node["parts"] = [describe(p) for p in part.iter_parts()]
        else:
            node["charset"] = part.get_content_charset()
            node["cte"] = part.get("Content-Transfer-Encoding")
            node["text"] = part.get_content()
        return node

    return describe(view)


def header_values(raw: bytes) -> dict:
    """The top-level headers' values as a client shows them (RFC 2047 decoded)."""
    view = message_from_bytes(raw, policy=email_policy.default)
    values = {}
    for name, value in message_from_bytes(raw).items():  # compat32: as written
        if name in ("Subject", "Message-ID") or name.startswith("X-"):
            values[name] = decoded(value)
    values["To"] = [a.addr_spec for a in view["To"].addresses]
    values["From"] = [a.addr_spec for a in view["From"].addresses]
    return values


def expected_values(email) -> dict:
    return {
        "Subject": email.subject,
        "Message-ID": email.message_id,
        **email.headers,
        "To": list(email.to),
        "From": ["alerts@contoso.example"],
    }


def display_name(raw: bytes) -> str:
    """The From display name a client shows."""
    written = message_from_bytes(raw)["From"]
    if "=?" in written:
        # Encoded words: decoded as RFC 2047 says (the email package's address
        # parser leaves a space between adjacent encoded words).
        return decoded(written).rpartition(" <")[0]
    view = message_from_bytes(raw, policy=email_policy.default)
    return view["From"].addresses[0].display_name


ROW = (
    '<tr><td style="padding:6px;border-bottom:1px solid #eef0f4;">High</td>'
    '<td><a href="https://appsec.example.test/projects/shop/findings/{i}/">B602'
    "</a></td><td><code>src/app/module_{i}.py:{i}</code></td></tr>"
)
TEXT = (
    "[High] 10 new vulnerabilities in Shop\n\n== 10 new vulnerabilities ==\n"
    "High: 4 · Medium: 3 · Low: 3\n"
    + "".join(
        f"\n- [High] B602 (subprocess)\n  src/app/module_{i}.py:{i}\n"
        f"  https://appsec.example.test/projects/shop/findings/{i}/\n"
        for i in range(10)
    )
    + "\n--\nProject: Shop — https://appsec.example.test/projects/shop/\n"
)
HTML = (
    '<!doctype html>\n<html lang="en">\n<body>\n<table>\n'
    + "\n".join(ROW.format(i=i) for i in range(10))
    + "\n</table>\n<p>Shop · settings</p>\n</body>\n</html>\n"
)
HEADERS = {
    "X-AppSec-Project": "shop",
    "X-AppSec-Event": "new_vulnerabilities",
    "X-AppSec-Delivery": "2f1c1d0e-7c1a-4a57-9b0f-3f6f3f1b2c10",
}
MESSAGE_ID = "<delivery-2f1c1d0e-7c1a-4a57-9b0f-3f6f3f1b2c10@appsec.example.test>"


def outgoing(**overrides) -> OutgoingEmail:
    values = {
        "to": ("appsec@contoso.onmicrosoft.com",),
        "subject": "[High] 10 new vulnerabilities in Shop",
        "text": TEXT,
        "html": HTML,
        "message_id": MESSAGE_ID,
        "headers": HEADERS,
    }
    values.update(overrides)
    return OutgoingEmail(**values)


CASES = {
    "new vulnerabilities (non-ASCII: quoted-printable)": outgoing(),
    "ASCII only (7bit)": outgoing(
        text="Plain text body\n", html="<p>HTML body</p>", subject="Scan completed"
    ),
    "text only": outgoing(html="", text="Only text, no HTML.\n"),
    "non-ASCII text only": outgoing(html="", text="Vulnérabilité\n"),
    "empty text": outgoing(text="", html=""),
    "an ASCII line of 1000 characters (quoted-printable)": outgoing(
        html="<p>" + "x" * 1000 + "</p>", text="y" * 995
    ),
    "line breaks of every kind, trailing spaces and tabs": outgoing(
        text="a\r\nb\rc\n\nd  \ne\t\n.dot\nFrom here\n=_ and =3D\n",
        html="<p>a</p>\r\n<p>b  </p>\r<p>\u2028c</p>",
    ),
    "no final line break": outgoing(text="last line", html="<p>last</p>"),
    "long ASCII subject (folded)": outgoing(
        subject="[Critical] " + "word " * 48 + "end"
    ),
    "long non-ASCII subject (encoded words)": outgoing(
        subject="[Élevé] " + "Vulnérabilité critique — ✓ " * 9
    ),
    "encoded-word look-alike in the subject": outgoing(
        subject="=?utf-8?q?Bcc=3A_x=40evil=2Eexample?= [High] rule"
    ),
    "several recipients": outgoing(
        to=("a@contoso.example", "b@contoso.example", "c.d-e@contoso.example")
    ),
    "non-ASCII custom header": outgoing(headers={**HEADERS, "X-AppSec-Project": "ä"}),
    "no Message-ID given: one is made": outgoing(message_id=""),
}
SENDER_NAMES = [
    "AppSec Alerts",
    "",
    "Équipe sécurité",
    "Équipe sécurité très longue, avec des accents " * 3,
    'Security" <ceo@contoso.com>, "x',
    "AppSec, Contoso",
    "Evil\r\nBcc: victim@example.com",
    "Evil\x00\x1b[31m\u2028Bcc: victim@example.com",
]
#: Where the previous builder wrote something else, and why the new one is right.
BEFORE_DIFFERED = {
    # CPython's SMTP policy decoded the look-alike and wrote "Subject: Bcc: x@evil.
    # example [High] rule"; it is now encoded, so it reads as the scan wrote it.
    "encoded-word look-alike in the subject",
    # At some folds it moved a space between two encoded words, where RFC 2047
    # drops it: "— ✓Vulnérabilité".
    "long non-ASCII subject (encoded words)",
}
#: Names the form accepts (no <, > or "), long enough for the From header to fold:
#: the previous builder folded them unquoted, so the header named several
#: addresses ("Contoso Application Security Team", "Production ...", the sender).
NAMES_BEFORE_SPLIT = [
    "Contoso Application Security Team, Production Vulnerability Alerts "
    "(automated), do not reply",
    "Dr. Who (the) ; a,b " * 5,
]


def both(email, sender_name="AppSec Alerts") -> tuple[bytes, bytes]:
    kwargs = {"sender": "alerts@contoso.example", "sender_name": sender_name}
    old = reference_build_message(email, **kwargs).as_bytes()
    new = build_message(email, **kwargs).as_bytes()
    return old, new


@pytest.mark.parametrize("case", CASES)
def test_the_mime_structure_is_what_the_email_package_builder_made(case):
    old, new = both(CASES[case])

    assert shape(new) == shape(old)


@pytest.mark.parametrize("case", CASES)
def test_header_values_read_as_given(case):
    email = CASES[case]
    old, new = both(email)
    values = header_values(new)
    if not email.message_id:
        # Made with make_msgid, as before: the same form, a new value each time.
        made = r"<[^<>@\s]+@contoso\.example>"
        assert re.fullmatch(made, values["Message-ID"])
        assert re.fullmatch(made, header_values(old)["Message-ID"])
        email = OutgoingEmail(**{**email.__dict__, "message_id": values["Message-ID"]})

    assert values == expected_values(email)
    if case not in BEFORE_DIFFERED:
        assert header_values(old) | {"Message-ID": values["Message-ID"]} == values


@pytest.mark.parametrize("name", SENDER_NAMES + NAMES_BEFORE_SPLIT)
def test_the_from_header_names_the_sender_once_with_its_name(name):
    old, new = both(outgoing(), sender_name=name)

    assert shape(new) == shape(old)
    assert header_values(new)["From"] == ["alerts@contoso.example"]
    assert display_name(new) == single_line(name, 100)
    if name in NAMES_BEFORE_SPLIT:
        assert len(header_values(old)["From"]) > 1
    else:
        assert header_values(old) == header_values(new)
        assert display_name(old) == display_name(new)
    parsed = message_from_bytes(new, policy=email_policy.default)
    assert parsed["Bcc"] is None and b"\nBcc:" not in new
    assert len(parsed.get_all("From")) == 1


@pytest.mark.parametrize("case", CASES)
def test_the_bytes_are_smtp_ready(case):
    raw = build_message(CASES[case], sender="n@example.com").as_bytes()

    assert raw.isascii()
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    header_block = raw.split(b"\r\n\r\n", 1)[0].decode()
    date = r"Date: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d -0000"
    assert any(re.fullmatch(date, line) for line in header_block.split("\r\n"))


@pytest.mark.parametrize("case", CASES)
def test_message_bytes_are_the_email_packages_bytes(case):
    # What the session sends (`message_bytes`, one write per payload) is byte for
    # byte what the email package's `as_bytes()` writes.
    message = build_message(CASES[case], sender="n@example.com", sender_name="Ops")

    assert message_bytes(message) == message.as_bytes()


def test_message_bytes_keep_line_ends_and_a_payload_without_a_last_newline():
    message = Message(policy=_POLICY)
    message["Subject"] = "Line ends"
    message.set_payload("one\ntwo\r\nthree\rfour")  # no newline at the end

    assert message_bytes(message) == message.as_bytes()
    assert message_bytes(message).endswith(b"\r\n\r\none\r\ntwo\r\nthree\r\nfour")


def test_the_message_id_and_delivery_headers_are_written_as_given():
    raw = build_message(outgoing(), sender="n@example.com").as_bytes()
    parsed = message_from_bytes(raw, policy=email_policy.default)

    assert parsed["Message-ID"] == MESSAGE_ID
    for name, value in HEADERS.items():
        assert parsed[name] == value
    assert [p.get_content_type() for p in parsed.iter_parts()] == [
        "text/plain",
        "text/html",
    ]


def test_a_line_break_in_a_header_value_is_refused_as_before():
    for email in (
        outgoing(subject="a\r\nBcc: victim@example.com"),
        outgoing(headers={"X-Test": "a\nBcc: victim@example.com"}),
        outgoing(to=("a@example.com\r\nBcc: victim@example.com",)),
    ):
        with pytest.raises(ValueError):
            reference_build_message(email, sender="n@example.com")
        with pytest.raises(ValueError):
            build_message(email, sender="n@example.com")


def test_headers_that_fit_are_written_as_compat32_writes_them():
    # The policy's shortcut must write exactly what compat32 would.
    reference = compat32.clone(linesep="\r\n")
    for name, value in [
        ("Subject", "[High] 2 new vulnerabilities in Shop"),
        ("Subject", "  leading and  double  spaces, trailing \t"),
        ("To", "a@example.com, b@example.com"),
        ("X-AppSec-Project", "x" * 60),
        ("Subject", "a long subject " * 10),  # folded as compat32 folds it
    ]:
        assert _POLICY.fold(name, value) == reference.fold(name, value)


def test_a_value_with_no_space_to_fold_at_stays_on_its_line():
    # compat32 would break the line after the colon only ("Message-ID: " CRLF
    # " <...>"), which some parsers read as a leading space.
    assert _POLICY.fold("Message-ID", MESSAGE_ID) == f"Message-ID: {MESSAGE_ID}\r\n"
