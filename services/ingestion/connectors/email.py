"""Inbound email: MIME parsing (standard library), threading and the interaction an email becomes.

Pure functions; the SMTP listener (``services/ingestion/smtp.py``) feeds them the raw message.

Threading: an email joins the conversation of any earlier message it names in ``In-Reply-To`` or
``References`` (looked up in ``ingestion.email_messages``); otherwise its conversation is named after the
thread's root, the first ``References`` entry, else ``In-Reply-To``, else its own ``Message-ID``, so a reply
arriving before its parent still lands in the same conversation.

What an email becomes (source ``email``): one ``email`` interaction, id = ``Message-ID`` (without ``<>``;
a hash of the message when absent, so an MTA's re-delivery is still a duplicate), identifier ``email`` = the
``From`` address, inbound; outbound (identifiers = the ``To``/``Cc`` addresses) when ``From`` is one of the
tenant's own addresses. ``subject``, ``text`` (the text/plain part, else the HTML part stripped of tags),
tags ``attachment:<sha256>:<size>:<content type>:<file name>`` per attachment: attachments are referenced,
never stored inline.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime

from services.ingestion.connectors.base import PayloadError, as_id, clean, interaction, stable_id

SOURCE = "email"
_MSG_ID = re.compile(r"<([^<>\s]{1,500})>")
_TAGS = re.compile(r"<[^>]*>")
MAX_ATTACHMENTS = 20


@dataclass(frozen=True)
class Attachment:
    name: str
    size: int
    content_type: str
    sha256: str

    def tag(self) -> str:
        return f"attachment:{self.sha256}:{self.size}:{self.content_type}:{self.name}"


@dataclass
class ParsedEmail:
    message_id: str
    sender: str
    recipients: list[str]
    references: list[str]  # References then In-Reply-To, oldest first, without <>
    subject: str | None
    text: str | None
    date: datetime | None
    attachments: list[Attachment] = field(default_factory=list)

    @property
    def root(self) -> str:
        return self.references[0] if self.references else self.message_id


def parse_email(raw: bytes) -> ParsedEmail:
    """Parse an RFC 5322 message. Raises PayloadError when it has no usable sender."""
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
        sender = _addresses(message, "from")
        recipients = _addresses(message, "to") + _addresses(message, "cc")
        subject = _header(message, "subject")
        references = _message_ids(_header(message, "references")) + _message_ids(_header(message, "in-reply-to"))
        own = _message_ids(_header(message, "message-id"))
        text, attachments = _body(message)
    except PayloadError:
        raise
    except Exception as exc:  # noqa: BLE001 - the stdlib parser raises many types on hostile MIME
        raise PayloadError(f"the message cannot be parsed ({type(exc).__name__})") from None
    if not sender:
        raise PayloadError("the message has no From address")
    message_id = as_id(own[0]) if own else None
    return ParsedEmail(
        message_id=message_id or "sha256-" + hashlib.sha256(raw).hexdigest(),
        sender=sender[0], recipients=recipients, references=list(dict.fromkeys(references)),
        subject=subject[:1000] if subject else None, text=text, date=_date(message), attachments=attachments,
    )


def _header(message: EmailMessage, name: str) -> str | None:
    value = message.get(name)
    return clean(str(value)).strip() or None if value is not None else None


def _addresses(message: EmailMessage, name: str) -> list[str]:
    values = [clean(str(v)) for v in message.get_all(name, [])]
    return [addr.strip() for _, addr in getaddresses(values) if "@" in addr and len(addr) <= 320]


def _message_ids(value: str | None) -> list[str]:
    return _MSG_ID.findall(value or "")


def _date(message: EmailMessage) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(str(message.get("date", "")))
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else None


def _body(message: EmailMessage) -> tuple[str | None, list[Attachment]]:
    text = None
    part = message.get_body(preferencelist=("plain", "html"))
    if part is not None:
        content = part.get_content()
        if isinstance(content, str):
            text = content if part.get_content_subtype() == "plain" else _TAGS.sub(" ", content)
    attachments = [_attachment(a) for a in list(message.iter_attachments())[:MAX_ATTACHMENTS]]
    return (clean(text).strip()[:65536] or None) if text else None, attachments


def _attachment(part: EmailMessage) -> Attachment:
    payload = part.get_payload(decode=True) or b""
    name = clean(part.get_filename() or "unnamed").replace(":", "_")[:200]
    return Attachment(name, len(payload), part.get_content_type()[:100], hashlib.sha256(payload).hexdigest())


def conversation_for(tenant: str, root: str) -> str:
    return stable_id(SOURCE, tenant, root)


def email_event(email: ParsedEmail, conversation_id: str, own_addresses: list[str]):
    """The interaction event of one parsed email for a tenant whose addresses are ``own_addresses``."""
    outbound = is_own(email.sender, own_addresses)
    customers = [a for a in email.recipients if not is_own(a, own_addresses)] if outbound else [email.sender]
    if not customers:
        raise PayloadError("an email from the tenant's own address has no customer recipient")
    data = {"channel": "email", "direction": "outbound" if outbound else "inbound",
            "identifiers": [{"type": "email", "value": a} for a in dict.fromkeys(customers)][:50],
            "conversation_id": conversation_id, "tags": [a.tag() for a in email.attachments]}
    if email.subject:
        data["subject"] = email.subject
    if email.text:
        data["text"] = email.text
    return interaction(SOURCE, email.message_id, data, email.date)


def is_own(address: str, own_addresses: list[str]) -> bool:
    """Whether ``address`` is one of ``own_addresses`` (exact, or ``@domain`` for a whole domain)."""
    address = address.lower()
    for own in own_addresses:
        own = own.lower()
        if address == own or (own.startswith("@") and address.endswith(own)):
            return True
    return False
