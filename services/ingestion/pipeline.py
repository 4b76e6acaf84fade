"""Ingestion use cases: the Kafka path (inbound topic → normalised internal topic) and the HTTP gateway.

Guarantees
- Kafka path: an upstream event is forwarded at least once and, once its forwarding has been recorded, never
  again (``ingestion.seen_events``). Order per batch, in one transaction: claim the events as seen (those
  claimed before are skipped; a concurrent claim waits for this transaction) → publish and wait for acks →
  commit → (caller) commit offsets. A failed publish rolls the claim back. A crash between the acks and the
  commit republishes the same events with the same ids; identity and timeline apply each one once.
- Invalid records go to ``touchpoint.inbound.v1.dlq`` with the reason in headers; the batch goes on.
- HTTP path: an event is answered 2xx only after Kafka acknowledged it on ``touchpoint.inbound.v1``.
- Personal fields leave ingestion sealed (``shared.vault``) under the data key of the event's most stable
  identifier, on both paths; the partition key is the tenant and that key's id, never an identifier.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

import asyncpg
import orjson
from opentelemetry.trace import SpanKind

from services.ingestion import repository
from services.ingestion.admission import Admission, AdmissionLimits
from services.ingestion.normalise import Ingested, ingest, ingested_event_id, key_identifier
from shared.cloudevents import CloudEvent, InvalidEvent, from_kafka, from_structured, to_kafka_headers, to_structured
from shared.contracts import types
from shared.contracts.profile import ProfileIngestedV1
from shared.db import UnitOfWork
from shared.kafka import EventProducer, OutboundRecord, dead_letter, event_record
from shared.telemetry import Step, Steps, end_all
from shared.vault import INTERACTION_FIELDS, PROFILE_FIELDS, DataKey, Shredded, Vault, seal

log = logging.getLogger(__name__)
SOURCE = "touchpoint/ingestion"
# The personal fields sealed in each accepted type and its ingested form.
SEALED_FIELDS = {types.INTERACTION_OCCURRED: INTERACTION_FIELDS, types.INTERACTION_INGESTED: INTERACTION_FIELDS,
                 types.PROFILE_UPDATED: PROFILE_FIELDS, types.PROFILE_INGESTED: PROFILE_FIELDS}


@dataclass(frozen=True)
class Rejection:
    index: int
    id: str | None
    reason: str
    detail: str


class IngestionPipeline:
    def __init__(self, pool: asyncpg.Pool, producer: EventProducer, inbound_topic: str, ingested_topic: str,
                 default_tenant: str, phone_region: str, steps: Steps | None = None,
                 on_duplicates: Callable[[int], None] = lambda n: None, admission: Admission | None = None,
                 vault: Vault | None = None) -> None:
        self.vault = vault or Vault(pool)
        self.admission = admission or Admission(AdmissionLimits())
        self.steps = steps or Steps(None, "ingestion")
        self.on_duplicates = on_duplicates
        self.pool = pool
        self.producer = producer
        self.inbound_topic = inbound_topic
        self.ingested_topic = ingested_topic
        self.default_tenant = default_tenant
        self.phone_region = phone_region

    # --- Kafka path ------------------------------------------------------------------------------------

    async def process_inbound(self, records: Sequence[Any]) -> None:
        """Handle one batch from the inbound topic. Idempotent; raises only on transient failures."""
        now = datetime.now(timezone.utc)
        outbound: list[OutboundRecord] = []
        accepted: dict[tuple[str, str, str], tuple[Ingested, Any]] = {}
        await self.vault.prefetch(records)
        for record in records:
            try:
                event = self.vault.open(from_kafka(record.value, record.headers))
                tenant, interaction = ingest(event, self.default_tenant, self.phone_region, now)
            except Shredded:
                continue  # sealed by the HTTP gateway for a customer erased since: nothing to forward
            except InvalidEvent as exc:
                outbound.append(dead_letter(record, exc.reason, exc))
                continue
            accepted.setdefault((tenant, interaction.source, interaction.event_id), (interaction, record.headers))
        async with UnitOfWork(self.pool) as uow:
            claimed = await repository.claim(uow.conn, list(accepted))
            fresh = [(key, i, h) for key, (i, h) in accepted.items() if key in claimed]
            # Data keys commit on their own, before anything sealed under them leaves.
            keys = await self.vault.subject_keys({(key[0], key_identifier(i.identifiers)) for key, i, _ in fresh})
            steps = [self.steps.start("ingestion.normalise", h, channel=getattr(i, "channel", "profile"))
                     for _, i, h in fresh]
            outbound.extend(self._ingested_record(key[0], i, keys[(key[0], key_identifier(i.identifiers))], now, step)
                            for (key, i, _), step in zip(fresh, steps))
            try:
                await self.producer.send_all(outbound)
            finally:
                end_all(steps)
            await uow.commit()
        self.on_duplicates(len(accepted) - len(fresh))
        if len(outbound) > len(fresh):
            log.warning("dead-lettered inbound records", extra={"count": len(outbound) - len(fresh)})

    def _ingested_record(self, tenant: str, interaction: Ingested, key: DataKey, now: datetime,
                         step: Step) -> OutboundRecord:
        event_type = types.PROFILE_INGESTED if isinstance(interaction, ProfileIngestedV1) else types.INTERACTION_INGESTED
        event = CloudEvent(
            id=ingested_event_id(tenant, interaction.source, interaction.event_id),
            source=SOURCE,
            type=event_type,
            time=now,
            data=interaction.model_dump(mode="json", exclude_none=event_type == types.PROFILE_INGESTED),
            extensions={"tenant": tenant},
        )
        seal(event, tenant, key, SEALED_FIELDS[event_type])
        return event_record(self.ingested_topic, f"{tenant}/{key.kid}", event, step.headers())

    # --- HTTP gateway ----------------------------------------------------------------------------------

    async def accept_http(self, items: list[Any], tenant: str, trace: Mapping[str, str] | None = None,
                          span: str = "ingestion.accept") -> tuple[list[str], list[Rejection]]:
        """Validate structured-mode events and relay the valid ones to the inbound topic.

        Returns (accepted ids, rejections). Raises :class:`Overloaded` when admission refuses or Kafka does not
        confirm in time, and any other Kafka failure as is: the caller answers 503. ``trace`` is the
        request's headers: a ``traceparent`` there becomes the parent of the ``ingestion.accept`` span.
        """
        now = datetime.now(timezone.utc)
        accepted: list[str] = []
        rejected: list[Rejection] = []
        valid: list[tuple[CloudEvent, str]] = []
        step = self.steps.start(span, trace, kind=SpanKind.SERVER, events=len(items))
        for index, item in enumerate(items):
            try:
                valid.append(self._validated(item, tenant, now))
            except InvalidEvent as exc:
                event_id = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else None
                rejected.append(Rejection(index, event_id, exc.reason, exc.detail))
                continue
            accepted.append(item["id"])
        try:
            keys = await self.vault.subject_keys({(tenant, subject) for _, subject in valid})
            records = [self._inbound_record(event, tenant, keys[(tenant, subject)], step) for event, subject in valid]
            if records:
                async with self.admission.publishing():
                    await self.admission.bounded(self.producer.send_all(records))
        except Exception as exc:
            step.end(exc)
            raise
        step.end()
        return accepted, rejected

    async def relay(self, events: list[CloudEvent], tenant: str) -> tuple[list[str], list[Rejection]]:
        """Relay events a channel connector built for ``tenant`` to the inbound topic, through the same
        validation as structured-mode HTTP events. Returns (accepted ids, rejections); raises on Kafka failure.
        """
        return await self.accept_http([_structured(e) for e in events], tenant, span="ingestion.relay_connector")

    async def key_ids(self, events: list[CloudEvent], tenant: str) -> list[str]:
        """The ids of the data keys ``events`` (those that are valid) are sealed under, created if missing."""
        now = datetime.now(timezone.utc)
        subjects = set()
        for event in events:
            try:
                subjects.add((tenant, self._validated(_structured(event), tenant, now)[1]))
            except InvalidEvent:
                continue
        return sorted(k.kid for k in (await self.vault.subject_keys(subjects)).values())

    def _validated(self, item: Any, tenant: str, now: datetime) -> tuple[CloudEvent, str]:
        """(the event, the identifier whose key seals it). Raises InvalidEvent."""
        event = from_structured(item)
        if event.tenant is not None and event.tenant != tenant:
            raise InvalidEvent("tenant_mismatch", "the event's tenant differs from the API key's tenant", event.id)
        if event.extensions.get("sealkey") is not None:
            raise InvalidEvent("invalid_attribute", "the sealkey attribute is set by Touchpoint only", event.id)
        event.extensions["tenant"] = tenant
        _, interaction = ingest(event, tenant, self.phone_region, now)
        return event, key_identifier(interaction.identifiers)

    def _inbound_record(self, event: CloudEvent, tenant: str, key: DataKey, step: Step) -> OutboundRecord:
        seal(event, tenant, key, SEALED_FIELDS[event.type])
        value = orjson.dumps(event.data)
        return OutboundRecord(self.inbound_topic, f"{tenant}/{key.kid}".encode(), value,
                              to_kafka_headers(event) + step.headers())


def _structured(event: CloudEvent) -> Any:
    """The event as structured-mode JSON, so relayed events meet exactly the checks HTTP events meet."""
    try:
        return orjson.loads(orjson.dumps(to_structured(event)))
    except orjson.JSONEncodeError:
        raise InvalidEvent("invalid_data", "the event is not serialisable as UTF-8 JSON", event.id) from None
