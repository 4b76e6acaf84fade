"""A recording producer: stands in for ``shared.kafka.EventProducer`` where a test inspects what a use case
publishes. It keeps records in memory and acknowledges at once. A vault with its keys in memory. And the
records identity consumes, built by hand for use cases fed without Kafka."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Iterable, Sequence

import orjson
from aiokafka.structs import ConsumerRecord
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared import topics
from shared.cloudevents import CloudEvent, from_kafka, to_kafka_headers
from shared.contracts import types
from shared.kafka import OutboundRecord
from shared.vault import EXTENSION, UNKNOWN, DataKey, Vault


class RecordingProducer:
    def __init__(self) -> None:
        self.records: list[OutboundRecord] = []

    async def send_all(self, records: Sequence[OutboundRecord]) -> None:
        self.records.extend(records)

    async def ping(self) -> bool:
        return True

    def to(self, suffix: str) -> list[OutboundRecord]:
        return [r for r in self.records if r.topic.endswith(suffix)]


class MemoryVault(Vault):
    """``shared.vault.Vault`` with its keys in memory, for use cases tested without PostgreSQL. ``shred``
    deletes a subject's key as erasure would."""

    def __init__(self) -> None:
        super().__init__(pool=None)
        self.keys: dict[tuple[str, str], DataKey] = {}  # (tenant, subject) -> key
        self.shredded: set[tuple[str, str]] = set()     # (tenant, kid)

    async def subject_keys(self, subjects: Iterable[tuple[str, str]]) -> dict[tuple[str, str], DataKey]:
        out = {}
        for tenant, subject in set(subjects):
            if (tenant, subject) not in self.keys:
                self.keys[(tenant, subject)] = DataKey(secrets.token_urlsafe(16), AESGCM.generate_key(bit_length=256))
            out[(tenant, subject)] = key = self.keys[(tenant, subject)]
            self._cache[(tenant, key.kid)] = (key, float("inf"))
        return out

    async def load(self, kids: Iterable[tuple[str, str]]) -> None:
        by_kid = {(t, k.kid): k for (t, _), k in self.keys.items()}
        for tenant, kid in kids:
            key = by_kid.get((tenant, kid))
            self._cache[(tenant, kid)] = (key if key else (None if (tenant, kid) in self.shredded else UNKNOWN),
                                          float("inf"))

    def shred(self, tenant: str, subject: str) -> None:
        key = self.keys.pop((tenant, subject))
        self.shredded.add((tenant, key.kid))
        self._cache.pop((tenant, key.kid), None)

    def opened(self, record: OutboundRecord) -> CloudEvent:
        """A published record decoded and opened (its key must be one of this vault's)."""
        event = from_kafka(record.value, record.headers)
        kid = event.extensions.get(EXTENSION)
        if kid is not None:
            by_kid = {(t, k.kid): k for (t, _), k in self.keys.items()}
            self._cache[(event.tenant, kid)] = (by_kid[(event.tenant, kid)], float("inf"))
        return self.open(event)


def ingested_record(tenant: str, at: datetime, event_id: str, *identifiers: tuple[str, str]) -> ConsumerRecord:
    """An ``interaction.ingested`` record as identity consumes it (unsealed), from source ``shop``."""
    data = {"channel": "web", "direction": "inbound", "identifiers": [{"type": t, "value": v} for t, v in identifiers],
            "source": "shop", "event_id": event_id, "occurred_at": at.isoformat(), "received_at": at.isoformat()}
    event = CloudEvent(id=event_id, source="touchpoint/ingestion", type=types.INTERACTION_INGESTED, time=at,
                       data=data, extensions={"tenant": tenant})
    value = orjson.dumps(data)
    return ConsumerRecord(topics.INGESTED.name, 0, 0, 0, 0, event_id.encode(), value, None, 3, len(value),
                          tuple(to_kafka_headers(event)))
