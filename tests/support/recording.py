"""A recording producer: stands in for ``shared.kafka.EventProducer`` where a test inspects what a use case
publishes. It keeps records in memory and acknowledges at once."""

from __future__ import annotations

from typing import Sequence

from shared.kafka import OutboundRecord


class RecordingProducer:
    def __init__(self) -> None:
        self.records: list[OutboundRecord] = []

    async def send_all(self, records: Sequence[OutboundRecord]) -> None:
        self.records.extend(records)

    async def ping(self) -> bool:
        return True

    def to(self, suffix: str) -> list[OutboundRecord]:
        return [r for r in self.records if r.topic.endswith(suffix)]
