"""Ingestion's back-pressure probe against a real broker: the lag of the furthest consumer group, counted over
every partition of its topic, with groups that do not exist skipped and topics created after the probe started
found; and the probe fetches the metadata of the topics it watches, not of every topic in the cluster (it runs
every 2 s)."""

from __future__ import annotations

import secrets

import pytest
from aiokafka import AIOKafkaConsumer

from shared import kafka, topics
from shared.ops import LagProbe, partitions
from tests.support import kafka_io

pytestmark = pytest.mark.integration


async def commit(bootstrap: str, group: str, topic: str, behind: int) -> None:
    """Commit ``group`` on every partition of ``topic`` at the end offset, except ``behind`` records short on
    the first partition that holds that many."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = await partitions(consumer, topic)
        end = await consumer.end_offsets(parts)
        short = next(tp for tp in parts if end[tp] >= behind)
        consumer.assign(parts)
        await consumer.commit({tp: end[tp] - (behind if tp == short else 0) for tp in parts})
    finally:
        await consumer.stop()


def records(n: int, tag: str) -> list[tuple[bytes, bytes, list]]:
    return [(f"{tag}-{i}".encode(), b"{}", []) for i in range(n)]


async def test_the_probe_reports_the_furthest_group_and_skips_groups_that_do_not_exist(infra):
    prefix = f"lag{secrets.token_hex(4)}."
    bootstrap = infra.bootstrap_servers
    probe = LagProbe(bootstrap, prefix)
    try:
        assert await probe.max_lag() == 0, "no topics, no groups yet"
        await kafka.create_topics(bootstrap, prefix)  # created after the probe started
        inbound, interactions = topics.INBOUND.qualified(prefix), topics.INGESTED.qualified(prefix)
        await kafka_io.publish(bootstrap, inbound, records(300, "in"))
        await kafka_io.publish(bootstrap, interactions, records(200, "ix"))
        assert await probe.max_lag() == 0, "groups that do not exist are skipped"

        await commit(bootstrap, f"{prefix}touchpoint-ingestion", inbound, behind=0)
        await commit(bootstrap, f"{prefix}touchpoint-identity", interactions, behind=17)
        assert await probe.max_lag() == 17

        await kafka_io.publish(bootstrap, inbound, records(40, "more"))
        assert await probe.max_lag() == 40, "over every partition of the topic"

        other = f"lag{secrets.token_hex(4)}."
        await kafka.create_topics(bootstrap, other)  # another stack's topics on the same cluster
        await probe.max_lag()
        known = probe._consumer._client.cluster.topics()  # noqa: SLF001 - what the probe fetched metadata for
        assert known and all(t.startswith(prefix) for t in known), "metadata of the watched topics only"
    finally:
        await probe.stop()
