"""One hop of the raw reference pipe: aiokafka consume → (batched insert) → produce, with no logic.

Run as ``python -m bench.refpipe --in TOPIC --out TOPIC --group GROUP [--dsn DSN]``, one process per hop, with
the same delivery discipline as the services: batches of up to 1,000 records (``getmany``, 20 ms), an idempotent
``acks=all`` producer with the services' settings, offsets committed only after every record of the batch was
acknowledged. With ``--dsn`` the hop first stores the batch in ``bench_ref.entries`` (same shape, primary key
and customer index as ``timeline.entries``) with one ``unnest`` insert ``ON CONFLICT DO NOTHING`` in one
transaction, like the timeline service does before it publishes.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from datetime import datetime, timezone

REF_SCHEMA = """
CREATE SCHEMA IF NOT EXISTS bench_ref;
CREATE TABLE IF NOT EXISTS bench_ref.entries (
    tenant       text NOT NULL,
    entry_id     text NOT NULL,
    customer_id  text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    seq          bigserial NOT NULL,
    kind         text NOT NULL,
    channel      text NOT NULL,
    source       text NOT NULL,
    event_id     text NOT NULL,
    payload      text NOT NULL,
    published    boolean NOT NULL DEFAULT false,
    PRIMARY KEY (tenant, entry_id)
);
CREATE INDEX IF NOT EXISTS ref_entries_by_customer ON bench_ref.entries (tenant, customer_id, occurred_at DESC, seq DESC);
"""

INSERT = (
    "INSERT INTO bench_ref.entries (tenant, entry_id, customer_id, occurred_at, kind, channel, source, event_id, payload)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[],"
    " $7::text[], $8::text[], $9::text[]) ON CONFLICT DO NOTHING"
)


def _row(record) -> tuple:
    headers = dict(record.headers)
    event_id = headers.get("ce_id", b"").decode()
    return (headers.get("ce_tenant", b"").decode(), event_id, (record.key or b"").decode(),
            datetime.fromtimestamp(record.timestamp / 1000, timezone.utc), "interaction", "other",
            headers.get("ce_source", b"").decode(), event_id, record.value.decode())


async def run(bootstrap: str, in_topic: str, out_topic: str, group: str, dsn: str | None) -> None:
    import asyncpg  # noqa: PLC0415
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: PLC0415

    from bench.loadgen import PRODUCER_CONFIG  # noqa: PLC0415
    from bench.measure import wait_partitions  # noqa: PLC0415

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2) if dsn else None
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, client_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=1000)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, client_id=group, **PRODUCER_CONFIG)
    await consumer.start()
    await producer.start()
    await wait_partitions(consumer, in_topic)  # a brand-new topic: subscribe once the metadata lists it
    consumer.subscribe([in_topic])
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=20, max_records=1000)
            records = [r for part in batch.values() for r in part]
            if not records:
                continue
            if pool is not None:
                rows = [_row(r) for r in records]
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute(INSERT, *[list(c) for c in zip(*rows)])
            futures = [await producer.send(out_topic, value=r.value, key=r.key, headers=list(r.headers))
                       for r in records]
            await asyncio.gather(*futures)
            await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()
        if pool is not None:
            await pool.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--in", dest="in_topic", required=True)
    p.add_argument("--out", dest="out_topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--dsn")
    a = p.parse_args()
    asyncio.run(run(a.bootstrap, a.in_topic, a.out_topic, a.group, a.dsn))


if __name__ == "__main__":
    main()
