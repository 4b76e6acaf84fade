"""SQL of the connectors (tables in migrations/002_connectors.sql). Each adapter takes the pool and runs one
short transaction per call; none keeps state between calls."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

import asyncpg

from services.ingestion.connectors import email as mail
from services.ingestion.connectors.webchat import Conversation
from shared.db import UnitOfWork


class RawPayloadLog:
    """The audit port: the raw body, cut to ``max_bytes``, once per (tenant, connector, body hash), with the
    data keys of the events it carried, so that erasing one of their customers deletes it (:meth:`forget_shredded`)."""

    def __init__(self, pool: asyncpg.Pool, max_bytes: int) -> None:
        self.pool = pool
        self.max_bytes = max_bytes
        self._swept_to: datetime | None = None

    async def keep(self, tenant: str, connector: str, content_type: str, body: bytes, event_ids: Sequence[str],
                   kids: Sequence[str] = ()) -> None:
        async with UnitOfWork(self.pool) as uow:
            await uow.conn.execute(
                "INSERT INTO ingestion.raw_payloads (tenant, connector, sha256, content_type, size_bytes, truncated,"
                " body, event_ids, kids) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
                tenant, connector, hashlib.sha256(body).hexdigest(), _text(content_type)[:200], len(body),
                len(body) > self.max_bytes, body[: self.max_bytes], [_text(i) for i in event_ids], sorted(set(kids)),
            )
            await uow.commit()

    async def forget_shredded(self) -> int:
        """Delete the payloads that carried an event whose key was shredded since the last call (all of them at
        the first call). Runs across tenants; returns how many were deleted."""
        async with UnitOfWork(self.pool) as uow:
            since = self._swept_to
            upto = await uow.conn.fetchval("SELECT now()")
            deleted = await uow.conn.fetchval(
                "WITH gone AS (DELETE FROM ingestion.raw_payloads r USING ("
                "   SELECT tenant, array_agg(kid) AS kids FROM platform.shredded_keys"
                "   WHERE $1::timestamptz IS NULL OR shredded_at >= $1 GROUP BY tenant) s"
                " WHERE r.tenant = s.tenant AND r.kids && s.kids RETURNING 1) SELECT count(*) FROM gone", since)
            await uow.commit()
        # Overlap the next window by a minute: a key shredded in a transaction that committed late is still seen.
        self._swept_to = upto - timedelta(minutes=1)
        return deleted


class EmailThreads:
    """The thread port: which conversation an email joins (see ``connectors/email.py``)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def conversation_of(self, tenant: str, email: mail.ParsedEmail) -> str:
        async with UnitOfWork(self.pool) as uow:
            known = await uow.conn.fetchval(
                "SELECT conversation_id FROM ingestion.email_messages"
                " WHERE tenant = $1 AND message_id = ANY($2::text[]) ORDER BY received_at LIMIT 1",
                tenant, [email.message_id, *email.references],
            )
            conversation = known or mail.conversation_for(tenant, email.root)
            await uow.conn.execute(
                "INSERT INTO ingestion.email_messages (tenant, message_id, conversation_id) VALUES ($1, $2, $3)"
                " ON CONFLICT DO NOTHING", tenant, email.message_id, conversation,
            )
            await uow.commit()
        return conversation


@dataclass(frozen=True)
class StoredReply:
    seq: int
    reply_id: str
    text: str
    agent_id: str | None
    sent_at: datetime


class WebchatStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add_conversation(self, c: Conversation) -> None:
        async with UnitOfWork(self.pool) as uow:
            await uow.conn.execute(
                "INSERT INTO ingestion.webchat_conversations (conversation_id, tenant, site_key, visitor_id, email,"
                " token_hash) VALUES ($1, $2, $3, $4, $5, $6)",
                uuid.UUID(c.conversation_id), c.tenant, c.site_key, c.visitor_id, c.email, c.token_hash,
            )
            await uow.commit()

    async def conversation(self, conversation_id: str) -> Conversation | None:
        try:
            key = uuid.UUID(conversation_id)
        except ValueError:
            return None
        row = await self.pool.fetchrow(
            "SELECT conversation_id, tenant, site_key, visitor_id, email, token_hash"
            " FROM ingestion.webchat_conversations WHERE conversation_id = $1", key,
        )
        return None if row is None else Conversation(str(row["conversation_id"]), *list(row.values())[1:])

    async def add_reply(self, conversation_id: str, reply_id: str, text: str, agent_id: str | None) -> None:
        async with UnitOfWork(self.pool) as uow:
            await uow.conn.execute(
                "INSERT INTO ingestion.webchat_replies (conversation_id, reply_id, text, agent_id)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                uuid.UUID(conversation_id), reply_id, text, agent_id,
            )
            await uow.commit()

    async def replies_after(self, conversation_id: str, seq: int, limit: int = 100) -> list[StoredReply]:
        rows = await self.pool.fetch(
            "SELECT seq, reply_id, text, agent_id, sent_at FROM ingestion.webchat_replies"
            " WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            uuid.UUID(conversation_id), seq, limit,
        )
        return [StoredReply(**dict(r)) for r in rows]


def _text(value: str) -> str:
    return value.replace("\x00", "").encode("utf-8", "replace").decode()
