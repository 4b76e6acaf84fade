"""Consent and preference contracts: what the CRM or preference centre records about how a customer may be
contacted.

Upstream systems publish these to ``touchpoint.consent.v1`` (keyed by customer id, or by the first identifier
when the id is unknown); the notification service consumes them and sends nothing a customer has not consented
to. Consent is given per (purpose, channel); channel ``any`` covers every channel, and a channel-specific record
wins over ``any``. ``consent_id`` is the upstream record's id: every message sent under a consent names it.

Readers are tolerant (unknown fields are ignored) so that optional fields can be added within a version; a
field is never renamed or retyped within a version. Every instant is timezone-aware: a naive datetime is
rejected.
"""

from datetime import time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from shared.contracts import types
from shared.contracts.business import CustomerRef, Id

Purpose = Literal["service", "marketing", "surveys"]
ContactChannel = Literal["email", "sms", "whatsapp", "webhook"]
ConsentChannel = Literal["email", "sms", "whatsapp", "webhook", "any"]
ClockTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", examples=["22:00"])]


class ConsentGrantedV1(BaseModel):
    """``touchpoint.consent.granted.v1``: the customer agreed to be contacted for ``purpose`` on ``channel``.

    ``wording_version`` identifies the text the customer agreed to and ``source`` where they did (web form,
    call, paper); the consent lapses at ``expires_at`` when one is given.
    """

    model_config = ConfigDict(extra="ignore")

    consent_id: Id
    customer: CustomerRef
    purpose: Purpose
    channel: ConsentChannel
    wording_version: str = Field(min_length=1, max_length=200)
    source: str = Field(min_length=1, max_length=200)
    occurred_at: AwareDatetime
    expires_at: AwareDatetime | None = None


class ConsentWithdrawnV1(BaseModel):
    """``touchpoint.consent.withdrawn.v1``: the customer withdrew consent for ``purpose`` on ``channel``.

    A withdrawal outranks every grant for the same (purpose, channel) given before ``occurred_at``.
    """

    model_config = ConfigDict(extra="ignore")

    consent_id: Id
    customer: CustomerRef
    purpose: Purpose
    channel: ConsentChannel
    source: str = Field(min_length=1, max_length=200)
    occurred_at: AwareDatetime
    wording_version: str | None = Field(default=None, max_length=200)


class QuietHoursWindow(BaseModel):
    """Local wall-clock times ("HH:MM") between which the customer does not want to be contacted; the window
    may cross midnight (22:00–07:00), and ``start == end`` means no quiet hours."""

    model_config = ConfigDict(extra="ignore")

    start: ClockTime
    end: ClockTime

    def times(self) -> tuple[time, time]:
        return time.fromisoformat(self.start), time.fromisoformat(self.end)


class PreferencesChangedV1(BaseModel):
    """``touchpoint.preferences.changed.v1``: the customer changed how they like to be contacted.

    Every preference is optional: a field absent from the data leaves that preference unchanged, an explicit
    ``null`` clears it (``changes()`` returns exactly the fields the event carried). ``time_zone`` is an IANA
    name (``Europe/Berlin``); ``topics`` maps a topic (``offers``, ``shipping``) to opted in or out;
    ``addresses`` are explicit contact points per channel (an e-mail address, an E.164 number, a webhook URL).
    ``display_name`` and ``tier`` (the CRM's segment or value tier, e.g. ``gold``) are shown to agents and play
    no part in contact decisions.
    """

    model_config = ConfigDict(extra="ignore")

    customer: CustomerRef
    occurred_at: AwareDatetime
    preferred_channel: ContactChannel | None = None
    language: str | None = Field(default=None, max_length=35)
    time_zone: str | None = Field(default=None, max_length=64)
    quiet_hours: QuietHoursWindow | None = None
    topics: dict[str, bool] | None = None
    display_name: str | None = Field(default=None, max_length=200)
    addresses: dict[ContactChannel, str] | None = None
    tier: str | None = Field(default=None, max_length=50, examples=["gold"])

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone") from None
        return value

    def changes(self) -> dict[str, Any]:
        """The preferences this event sets or clears (absent fields are not included)."""
        return {name: getattr(self, name) for name in self.model_fields_set - {"customer", "occurred_at"}}


CONSENT_MODELS: dict[str, type[BaseModel]] = {
    types.CONSENT_GRANTED: ConsentGrantedV1,
    types.CONSENT_WITHDRAWN: ConsentWithdrawnV1,
    types.PREFERENCES_CHANGED: PreferencesChangedV1,
}
