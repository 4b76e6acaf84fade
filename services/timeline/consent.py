"""Consent and preferences for the agent console, from ``touchpoint.consent.v1``.

The timeline keeps the current consent per (purpose, channel) and the newest value of each preference, per
subject: ``id:<customer id>`` when the event named the customer, else each of its identifiers (``type:value``,
normalised as identity normalises them). A reader gathers the subjects of the customer's id, merged ids and
identifiers, so a consent recorded under an e-mail address before the customer existed is found, and merges
need no re-keying.

Guarantees
- Idempotent and order-independent: a record is replaced only by a newer one (``occurred_at``; on a tie a
  withdrawal wins, as for the notification service), a preference field only by a newer value. Redelivered or
  replayed batches change nothing.
- One transaction per batch; events breaking their contract go to the dead-letter topic.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import asyncpg

from services.timeline import repository as repo
from shared.cloudevents import InvalidEvent
from shared.contracts.business import CustomerRef
from shared.contracts.consent import CONSENT_MODELS, ConsentGrantedV1, ConsentWithdrawnV1, PreferencesChangedV1
from shared.db import UnitOfWork
from shared.identifiers import normalise_identifier
from shared.intake import decode
from shared.kafka import EventProducer, dead_letter

log = logging.getLogger(__name__)


def subjects_of(ref: CustomerRef, region: str) -> list[str]:
    """The subjects an event about ``ref`` is recorded under (raises ``InvalidEvent`` for a bad identifier)."""
    if ref.customer_id:
        return [f"id:{ref.customer_id}"]
    return sorted({f"{i.type}:{i.value}" for i in (normalise_identifier(i, region) for i in ref.identifiers)})


def merge_preferences(current: dict[str, Any], changes: dict[str, Any], at: str) -> dict[str, Any]:
    """``current`` ({field: {"value", "at"}}) with each of ``changes`` applied unless a newer value is kept."""
    merged = dict(current)
    for name, value in changes.items():
        kept = merged.get(name)
        if kept is None or kept["at"] <= at:
            merged[name] = {"value": value, "at": at}
    return merged


class ConsentProjection:
    def __init__(self, pool: asyncpg.Pool, producer: EventProducer, phone_region: str) -> None:
        self.pool = pool
        self.producer = producer
        self.phone_region = phone_region

    async def process(self, records: Sequence[Any]) -> None:
        """Handle one batch of the consent topic. Idempotent; raises only transient errors."""
        decoded, dead = decode(records, CONSENT_MODELS)
        consents: dict[tuple[str, str, str, str], tuple] = {}
        preferences: list[tuple[str, str, dict[str, Any], str]] = []
        for item in decoded:
            tenant, data = item.event.tenant, item.data
            try:
                subjects = subjects_of(data.customer, self.phone_region)
            except InvalidEvent as exc:
                dead.append(dead_letter(item.record, exc.reason, exc))
                continue
            for subject in subjects:
                if isinstance(data, PreferencesChangedV1):
                    changes = data.model_dump(mode="json", include=set(data.changes()))
                    preferences.append((tenant, subject, changes, data.occurred_at.isoformat()))
                else:
                    _keep_newest(consents, _consent_row(tenant, subject, data))
        async with UnitOfWork(self.pool) as uow:
            await repo.upsert_consents(uow.conn, list(consents.values()))
            await self._apply_preferences(uow.conn, preferences)
            subjects = {(r[0], r[1]) for r in consents.values()} | {(t, s) for t, s, _, _ in preferences}
            await repo.notify_changed(uow.conn, await repo.customers_of_subjects(uow.conn, subjects))
            await uow.commit()
        if dead:
            await self.producer.send_all(dead)

    async def _apply_preferences(self, conn: asyncpg.Connection, changes: list[tuple[str, str, dict, str]]) -> None:
        if not changes:
            return
        current = await repo.preferences_for_update(conn, sorted({(t, s) for t, s, _, _ in changes}))
        for tenant, subject, fields, at in changes:
            current[(tenant, subject)] = merge_preferences(current.get((tenant, subject), {}), fields, at)
        await repo.upsert_preferences(conn, current)


def _consent_row(tenant: str, subject: str, c: ConsentGrantedV1 | ConsentWithdrawnV1) -> tuple:
    granted = isinstance(c, ConsentGrantedV1)
    return (tenant, subject, c.purpose, c.channel, granted, c.consent_id, c.wording_version, c.source,
            c.occurred_at, c.expires_at if granted else None)


def _keep_newest(rows: dict[tuple, tuple], row: tuple) -> None:
    """Keep, per (tenant, subject, purpose, channel), the newest record; a withdrawal wins a tie."""
    key = row[:4]
    kept = rows.get(key)
    if kept is None or (row[8], not row[4]) > (kept[8], not kept[4]):
        rows[key] = row
