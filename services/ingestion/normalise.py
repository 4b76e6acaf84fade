"""Validation and normalisation of upstream interactions. Pure functions; raise InvalidEvent on bad input.

Identifiers are normalised by ``shared.identifiers``; identifiers that normalise to the same (type, value)
are kept once.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import ValidationError

from shared.cloudevents import CloudEvent, InvalidEvent
from shared.contracts import types
from shared.contracts.interaction import Identifier, InteractionIngestedV1, InteractionOccurredV1
from shared.contracts.profile import ProfileIngestedV1, ProfileUpdatedV1
from shared.identifiers import normalise_identifier
from shared.ids import uuid5

# Partition-key preference: the most stable identifier first, so one person's events mostly share a key.
KEY_PRIORITY = ("user_id", "contract_id", "account_id", "email", "phone", "whatsapp", "twitter", "facebook",
                "instagram", "device_id", "cookie_id")
NAMESPACE = uuid.UUID("6f1c1e1a-6a35-4f8e-9a41-0c4b3f7d2a10")


def validation_summary(exc: ValidationError) -> str:
    """Field paths and messages only: input values may be personal data and are never echoed."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'data'}: {e['msg']}" for e in exc.errors()[:10])


Ingested = InteractionIngestedV1 | ProfileIngestedV1
ACCEPTED = (types.INTERACTION_OCCURRED, types.PROFILE_UPDATED)


def ingest(event: CloudEvent, default_tenant: str, region: str, received_at: datetime) -> tuple[str, Ingested]:
    """Validate an upstream event (an interaction or a profile); returns (tenant, its normalised form). Raises
    InvalidEvent."""
    if event.type not in ACCEPTED:
        raise InvalidEvent("unsupported_type", f"event type {event.type!r} is not accepted here", event.id)
    if _has_nul(event.data):
        raise InvalidEvent("invalid_data", "text must not contain NUL characters", event.id)
    if event.type == types.PROFILE_UPDATED:
        return event.tenant or default_tenant, _profile(event, region, received_at)
    try:
        occurred = InteractionOccurredV1.model_validate(event.data)
    except ValidationError as exc:
        raise InvalidEvent("invalid_data", validation_summary(exc), event.id) from None
    identifiers = list(dict.fromkeys(normalise_identifier(i, region) for i in occurred.identifiers))
    fields = occurred.model_dump(exclude={"identifiers", "occurred_at"})
    ingested = InteractionIngestedV1(
        **fields,
        identifiers=identifiers,
        source=event.source,
        event_id=event.id,
        occurred_at=occurred.occurred_at or event.time or received_at,
        received_at=received_at,
    )
    return event.tenant or default_tenant, ingested


def _profile(event: CloudEvent, region: str, received_at: datetime) -> ProfileIngestedV1:
    """The profile with normalised identifiers; its ``email`` and ``phone`` are identifiers too (normalised the
    same way, so they link deterministically before any fuzzy comparison)."""
    try:
        updated = ProfileUpdatedV1.model_validate(event.data)
        extra = [Identifier(type=t, value=v) for t, v in (("email", updated.email), ("phone", updated.phone)) if v]
        identifiers = list(dict.fromkeys(normalise_identifier(i, region) for i in [*updated.identifiers, *extra]))
        return ProfileIngestedV1(
            **updated.model_dump(exclude={"identifiers", "occurred_at"}),
            identifiers=identifiers[:50],
            source=event.source,
            event_id=event.id,
            occurred_at=updated.occurred_at or event.time or received_at,
            received_at=received_at,
        )
    except ValidationError as exc:
        raise InvalidEvent("invalid_data", validation_summary(exc), event.id) from None


def _has_nul(value: object) -> bool:
    """NUL cannot be stored in PostgreSQL text; such events are refused, not retried forever."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def key_identifier(identifiers: list[Identifier]) -> str:
    """``type:value`` of the most stable identifier: the subject whose data key seals the event, so one
    person's events mostly share a key and a partition (the partition key is ``tenant/<key id>``)."""
    rank = {t: i for i, t in enumerate(KEY_PRIORITY)}
    best = min(identifiers, key=lambda i: (rank.get(i.type, len(rank)), i.type, i.value))
    return f"{best.type}:{best.value}"


def ingested_event_id(tenant: str, source: str, event_id: str) -> str:
    """Deterministic id of the internal event, so a re-publication carries the same id."""
    return uuid5(NAMESPACE, f"ingested\x00{tenant}\x00{source}\x00{event_id}")
