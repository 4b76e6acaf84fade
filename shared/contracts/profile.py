"""Profile contracts: what an upstream system knows about a person, beyond identifiers.

A shop sign-up, a call-centre record or a CRM contact describes a person by name, birth date and address, often
with typos and without any identifier another system shares. Identity matches such profiles fuzzily
(``docs/services/identity.md``, "Fuzzy matching"). Readers are tolerant (unknown fields are ignored); a field is
never renamed or retyped within a version.

Touchpoint's own topics carry the personal fields sealed (``shared/vault.py``); the models describe the events
once opened.
"""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts import types
from shared.contracts.interaction import Identifier

_Text = Field(default=None, max_length=200)


class Address(BaseModel):
    """A postal address as the upstream system recorded it; every part optional."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    house_number: str | None = Field(default=None, max_length=40, examples=["12"])
    street: str | None = Field(default=None, max_length=200, examples=["Lindenstraße"])
    extra: str | None = Field(default=None, max_length=200, description="building, flat, c/o", examples=["Flat 3"])
    locality: str | None = Field(default=None, max_length=200, description="city, town or suburb", examples=["Berlin"])
    postcode: str | None = Field(default=None, max_length=20, examples=["10117"])
    region: str | None = Field(default=None, max_length=100, description="state or province", examples=["BE"])
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2", examples=["DE"])


class ProfileFields(BaseModel):
    """Fields common to every form of a profile.

    ``identifiers`` name the record in the upstream system (its account or contact id, at least one) and any
    identifier it holds; ``email`` and ``phone`` are added to them by ingestion. ``birth_date`` is kept as
    recorded (``YYYY-MM-DD``, not checked against the calendar): a typo in it is evidence, not an error.
    ``national_id`` (a social security or tax number) is compared fuzzily, never linked as an identifier.
    """

    model_config = ConfigDict(extra="ignore")

    identifiers: list[Identifier] = Field(min_length=1, max_length=50)
    given_name: str | None = _Text
    family_name: str | None = _Text
    birth_date: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$", examples=["1984-03-07"])
    address: Address | None = None
    national_id: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)
    language: str | None = Field(default=None, max_length=35)
    time_zone: str | None = Field(default=None, max_length=64, examples=["Europe/Berlin"])


class ProfileUpdatedV1(ProfileFields):
    """``touchpoint.profile.updated.v1``: an upstream system created or changed its record of a person.

    Published by upstream systems to ``touchpoint.inbound.v1`` or ``POST /v1/events``, like interactions.
    ``occurred_at`` defaults to the CloudEvents ``time``; the CloudEvents ``source`` names the upstream system.
    """

    occurred_at: datetime | None = None


class ProfileIngestedV1(ProfileFields):
    """``touchpoint.profile.ingested.v1``: a validated profile with normalised identifiers (``email`` and
    ``phone`` among them). ``source`` and ``event_id`` are the upstream CloudEvents ``source`` and ``id``."""

    source: str
    event_id: str
    occurred_at: datetime
    received_at: datetime


PROFILE_MODELS: dict[str, type[BaseModel]] = {
    types.PROFILE_UPDATED: ProfileUpdatedV1,
    types.PROFILE_INGESTED: ProfileIngestedV1,
}
