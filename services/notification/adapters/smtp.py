"""Email over SMTP: one connection per message, through the standard library's blocking ``smtplib`` run in a
worker thread (no asyncio SMTP client is a dependency).

The message is ``text/plain`` or, with an HTML body, ``multipart/alternative`` (text, then HTML), UTF-8 and
quoted-printable, with the subject RFC 2047-encoded where it is not ASCII. ``Message-ID`` is
``<{idempotency_key}@touchpoint>`` (characters not allowed in a message id percent-encoded), so a resend after
a crash carries the same id and the receiving side can recognise it; SMTP itself has no de-duplication.
``Auto-Submitted: auto-generated`` (RFC 3834) keeps auto-responders from answering.

Failures: a 5xx reply (recipient unknown, message refused, authentication failed) or a server lacking a
required extension is permanent; a 4xx reply, a refused or lost connection and a timeout are transient.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from urllib.parse import quote

from pydantic import SecretStr

from services.notification.adapters import OutboundMessage, SendError, SendResult

# RFC 5322 atext besides letters, digits and "_.-~" (which quote() keeps anyway); "%" is deliberately absent
# so percent-encoding stays unambiguous.
MESSAGE_ID_SAFE = "!#$&'*+/=?^`{|}"


def message_id_for(idempotency_key: str) -> str:
    return f"<{quote(idempotency_key, safe=MESSAGE_ID_SAFE)}@touchpoint>"


def build_email(message: OutboundMessage, sender: str, now: datetime | None = None) -> EmailMessage:
    """The email for ``message``. Raises SendError(invalid_message) for a header that cannot be written
    (line breaks in the address or subject)."""
    email = EmailMessage()
    try:
        email["From"] = sender
        email["To"] = message.to
        email["Subject"] = message.subject or ""
    except ValueError:
        raise SendError("invalid_message", True, "a header contains a line break") from None
    email["Date"] = format_datetime(now or datetime.now(timezone.utc))
    email["Message-ID"] = message_id_for(message.idempotency_key)
    email["Auto-Submitted"] = "auto-generated"
    # Quoted-printable keeps the message 7-bit, so it needs no 8BITMIME support on the way.
    email.set_content(message.text, charset="utf-8", cte="quoted-printable")
    if message.html is not None:
        email.add_alternative(message.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return email


class SmtpSender:
    channel = "email"

    def __init__(self, host: str, port: int, sender_address: str, username: str | None = None,
                 password: SecretStr | None = None, starttls: bool = False, timeout: float = 30.0) -> None:
        envelope_from = parseaddr(sender_address)[1]
        if "@" not in envelope_from:
            raise ValueError("sender_address must contain an email address")
        self.host, self.port, self.sender_address = host, port, sender_address
        self.username, self.starttls, self.timeout = username, starttls, timeout
        self._password = password if isinstance(password, SecretStr) or password is None else SecretStr(password)
        self._envelope_from = envelope_from

    def __repr__(self) -> str:
        return (f"SmtpSender(host={self.host!r}, port={self.port}, sender_address={self.sender_address!r}, "
                f"username={self.username!r}, password={self._password!r}, starttls={self.starttls})")

    async def send(self, message: OutboundMessage) -> SendResult:
        """Hands the message to the SMTP server. Raises SendError. Not idempotent by itself: a resend is a new
        email carrying the same Message-ID."""
        recipient = parseaddr(message.to)[1]
        if "@" not in recipient:
            raise SendError("invalid_message", True, "the recipient is not an email address")
        email = build_email(message, self.sender_address)
        await asyncio.to_thread(self._deliver, email, recipient)
        return SendResult(email["Message-ID"])

    async def aclose(self) -> None:
        """Nothing to release: every send opens and closes its own connection."""

    def _deliver(self, email: EmailMessage, recipient: str) -> None:
        smtp = smtplib.SMTP(timeout=self.timeout)
        try:
            smtp.connect(self.host, self.port)
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username is not None and self._password is not None:
                smtp.login(self.username, self._password.get_secret_value())
            smtp.send_message(email, from_addr=self._envelope_from, to_addrs=[recipient])
        except (smtplib.SMTPException, OSError) as exc:
            raise smtp_error(exc) from exc
        finally:
            _quit(smtp)


def smtp_error(exc: BaseException) -> SendError:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code = min(code for code, _ in exc.recipients.values())
        return _by_code(code, "the server refused the recipient")
    if isinstance(exc, smtplib.SMTPResponseException):
        return _by_code(exc.smtp_code, "the server refused the message")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return SendError("smtp_not_supported", True, "the server lacks a required extension (STARTTLS, SMTPUTF8)")
    if isinstance(exc, TimeoutError):
        return SendError("timeout", False, "the SMTP server did not answer in time")
    return SendError("connection_failed", False, f"no usable connection to the SMTP server ({type(exc).__name__})")


def _by_code(code: int, what: str) -> SendError:
    return SendError(f"smtp_{code}", 500 <= code < 600, f"{what} with code {code}")


def _quit(smtp: smtplib.SMTP) -> None:
    """QUIT politely; the message is already accepted or refused, so a failing QUIT changes nothing."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()
