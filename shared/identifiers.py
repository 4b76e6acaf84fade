"""Identifier normalisation: the one definition every service applies before comparing identifiers.

Emails trimmed and lower-cased; phone numbers to E.164 (``phonenumbers``, with a default region for national
numbers; a WhatsApp id made of digits is a phone number); social handles lower-cased without a leading ``@``;
other types trimmed. Raises InvalidEvent (reason ``invalid_identifier``) for values that cannot be one.
"""

from __future__ import annotations

import phonenumbers

from shared.cloudevents import InvalidEvent
from shared.contracts.interaction import Identifier

HANDLE_TYPES = {"whatsapp", "facebook", "instagram", "twitter"}


def normalise_identifier(ident: Identifier, region: str) -> Identifier:
    value = ident.value.strip()
    if ident.type == "email":
        value = value.lower()
        if "@" not in value or value.startswith("@") or value.endswith("@"):
            raise InvalidEvent("invalid_identifier", "an email identifier is not an address")
    elif ident.type == "whatsapp" and value.lstrip("+").isdigit():
        value = _e164("+" + value.lstrip("+"), region)  # WhatsApp ids are international numbers without "+"
    elif ident.type == "phone":
        value = _e164(value, region)
    elif ident.type in HANDLE_TYPES:
        value = value.lstrip("@").lower()
    if not value:
        raise InvalidEvent("invalid_identifier", f"{ident.type} identifier is empty")
    return Identifier(type=ident.type, value=value)


def _e164(raw: str, region: str) -> str:
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        raise InvalidEvent("invalid_identifier", "a phone identifier is not a phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise InvalidEvent("invalid_identifier", "a phone identifier is not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
