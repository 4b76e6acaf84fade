"""Interaction contracts: the upstream event and its normalised and resolved forms.

Readers are tolerant (unknown fields are ignored) so that optional fields can be added within a version;
a field is never renamed or retyped within a version.

Touchpoint's own topics carry the personal fields (``identifiers``, ``subject``, ``text``) sealed: encrypted
in ``data.sealed`` under a per-subject data key named by the ``sealkey`` attribute, so that erasing a customer
(deleting its keys) erases every copy (``shared/vault.py``). The models describe the events once opened.
"""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Channel = Literal[
    "email", "phone", "sms", "whatsapp", "chat", "facebook", "instagram", "twitter", "app", "web",
    "store", "event", "community", "letter", "other",
]
Direction = Literal["inbound", "outbound"]

# Known identifier types; any other lower-case token (e.g. ``loyalty_card``) is accepted as a custom type.
KNOWN_IDENTIFIER_TYPES = (
    "email", "phone", "user_id", "account_id", "contract_id", "device_id", "cookie_id",
    "whatsapp", "facebook", "instagram", "twitter",
)


class Identifier(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str = Field(pattern=r"^[a-z][a-z0-9_]{1,31}$", examples=["email", "phone", "contract_id"])
    value: str = Field(min_length=1, max_length=320)


class InteractionFields(BaseModel):
    """Fields common to every form of an interaction."""

    model_config = ConfigDict(extra="ignore")

    channel: Channel
    direction: Direction
    identifiers: list[Identifier] = Field(min_length=1, max_length=50)
    conversation_id: str | None = Field(default=None, max_length=200)
    case_id: str | None = Field(default=None, max_length=200)
    subject: str | None = Field(default=None, max_length=1000)
    text: str | None = Field(default=None, max_length=65536)
    language: str | None = Field(default=None, max_length=35)
    agent_id: str | None = Field(default=None, max_length=200)
    tags: list[str] = Field(default_factory=list, max_length=50)


class InteractionOccurredV1(InteractionFields):
    """``touchpoint.interaction.occurred.v1``: an upstream system saw a customer interaction.

    Published by upstream systems to ``touchpoint.inbound.v1`` or ``POST /v1/events``. ``occurred_at``
    defaults to the CloudEvents ``time``; the CloudEvents ``source`` names the upstream system.
    """

    occurred_at: datetime | None = None


class InteractionIngestedV1(InteractionFields):
    """``touchpoint.interaction.ingested.v1``: a validated interaction with normalised identifiers.

    ``source`` and ``event_id`` are the upstream CloudEvents ``source`` and ``id``: the idempotency key of
    every later effect.
    """

    source: str
    event_id: str
    occurred_at: datetime
    received_at: datetime


class InteractionResolvedV1(InteractionIngestedV1):
    """``touchpoint.interaction.resolved.v1``: an ingested interaction attributed to one customer."""

    customer_id: str
