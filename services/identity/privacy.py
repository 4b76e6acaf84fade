"""Erasure requests from upstream systems (``touchpoint.privacy.v1``), carried out like the erasure API.

Guarantees
- Once per request: the erasure's id derives from the request's CloudEvents source and id, and a customer
  already erased is acknowledged as done, so a redelivery changes nothing.
- A request naming nobody Touchpoint knows is acknowledged (and logged without its identifiers); a request that
  breaks its contract goes to the dead-letter topic.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Sequence

import asyncpg

from services.identity import admin
from services.identity import repository as repo
from shared.contracts.business import CustomerRef
from shared.contracts.privacy import PRIVACY_MODELS
from shared.db import UnitOfWork
from shared.identifiers import normalise_identifier
from shared.intake import decode
from shared.kafka import EventProducer, dead_letter
from shared.vault import Vault

log = logging.getLogger(__name__)


class ErasureRequests:
    def __init__(self, pool: asyncpg.Pool, producer: EventProducer, publish_changes: Callable[[], Awaitable[int]],
                 phone_region: str, vault: Vault | None = None) -> None:
        self.pool = pool
        self.producer = producer
        self.publish_changes = publish_changes
        self.phone_region = phone_region
        self.vault = vault or Vault(pool)

    async def process(self, records: Sequence[Any]) -> None:
        await self.vault.prefetch(records)
        requests, dead = decode(records, PRIVACY_MODELS, vault=self.vault)
        for item in requests:
            tenant = item.event.tenant
            try:
                customers = await self._customers(tenant, item.data.customer)
            except ValueError as exc:  # an identifier that cannot be normalised
                dead.append(dead_letter(item.record, "invalid_identifier", exc))
                continue
            if not customers:
                log.info("erasure request names no known customer", extra={"request": item.event.id, "tenant": tenant})
            for customer_id in customers:
                try:
                    done = await admin.erase(self.pool, tenant, customer_id, f"{item.event.source}\x00{item.event.id}")
                except admin.AdminError as exc:
                    if exc.status != 404:
                        raise
                    continue  # erased already (this request, redelivered, or an earlier one)
                log.info("customer erased on request", extra={"request": item.event.id, "tenant": tenant,
                                                               "erasure_id": done["erasure_id"]})
        await self.producer.send_all(dead)
        await self.publish_changes()

    async def _customers(self, tenant: str, ref: CustomerRef) -> list[str]:
        """The customers the request names: its customer id, else every customer one of its identifiers
        belongs to."""
        if ref.customer_id is not None:
            return [ref.customer_id]
        keys = [(tenant, i.type, i.value) for i in (normalise_identifier(i, self.phone_region) for i in ref.identifiers)]
        async with UnitOfWork(self.pool) as uow:
            owners = await repo.owners(uow.conn, keys)
        return sorted(set(owners.values()))
