"""Decoding a consumed batch: CloudEvents from Kafka records, validated against the types a subscriber accepts.

Every subscriber treats a bad record the same way: it goes to the dead-letter topic with its reason and the
rest of the batch goes on. A record without the ``tenant`` attribute, of a type the subscriber does not accept
(unless it ignores other types on a shared topic), or whose data breaks its contract is such a record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from pydantic import BaseModel, ValidationError

from shared.cloudevents import CloudEvent, InvalidEvent, from_kafka
from shared.kafka import OutboundRecord, dead_letter
from shared.vault import Shredded, Vault


@dataclass(frozen=True)
class Decoded:
    event: CloudEvent
    data: Any      # the validated model, or the raw data for a type accepted without a model
    record: Any    # the Kafka record, for a dead letter raised later

    @property
    def key(self) -> tuple[str, str, str]:
        """(tenant, source, id): what makes a consumed event idempotent."""
        return self.event.tenant, self.event.source, self.event.id


def decode(records: Sequence[Any], models: Mapping[str, type[BaseModel] | None],
           ignore_others: bool = False, vault: Vault | None = None) -> tuple[list[Decoded], list[OutboundRecord]]:
    """The records as validated events, and dead letters for those that cannot be accepted. ``models`` maps
    each accepted type to its model (None: accepted as raw data); ``ignore_others`` acknowledges every other
    type without effect (a topic shared by several producers' event types). Sealed events are opened with
    ``vault`` (whose keys the caller prefetched); one whose key was shredded is skipped (an erased customer)."""
    decoded: list[Decoded] = []
    dead: list[OutboundRecord] = []
    for record in records:
        try:
            event = from_kafka(record.value, record.headers)
            if vault is not None:
                event = vault.open(event)
            if not event.tenant:
                raise InvalidEvent("missing_attribute", "the tenant extension attribute is required")
            if event.type not in models:
                if ignore_others:
                    continue
                raise InvalidEvent("unsupported_type", f"event type {event.type!r} is not accepted here")
            model = models[event.type]
            decoded.append(Decoded(event, model.model_validate(event.data) if model else event.data, record))
        except Shredded:
            continue
        except (InvalidEvent, ValidationError) as exc:
            dead.append(dead_letter(record, getattr(exc, "reason", "invalid_data"), exc))
    return decoded, dead
