"""SQL of the notification service. Functions take a connection inside the caller's unit of work and never
commit; batch operations use ``unnest`` so a batch is a handful of statements, not one per row."""

from __future__ import annotations

import uuid
from datetime import datetime, time, timedelta
from typing import Any, Sequence

import asyncpg
import orjson

from services.notification.domain.model import (
    Consent,
    PastSend,
    Preferences,
    QuietHours,
    Recipient,
)
from shared import directory

SCHEMA = "notification"
SENT = ("sending", "sent", "delivered")
CAP_HORIZON = timedelta(days=31)
# Which channels an identifier type can reach.
ADDRESS_CHANNELS = {"email": ("email",), "phone": ("sms", "whatsapp"), "whatsapp": ("whatsapp",)}


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


# ---- customers ----------------------------------------------------------------------------------------------

async def erase_customer(conn: asyncpg.Connection, tenant: str, customer_id: str) -> None:
    """Erasure: contact points, preferences and pending messages go; the consent log stays as the proof of
    what was sent on which basis (Art. 7(1)), without addresses."""
    for table in ("directory", "preferences", "last_inbound", "breaches"):
        await conn.execute(f"DELETE FROM notification.{table} WHERE tenant = $1 AND customer_id = $2", tenant, customer_id)
    await conn.execute(
        """UPDATE notification.notifications SET status = 'suppressed', payload = '{}'::jsonb, updated_at = now()
           WHERE tenant = $1 AND customer_id = $2 AND status IN ('scheduled', 'held')""", tenant, customer_id)


async def rename_customer(conn: asyncpg.Connection, tenant: str, merged_ids: Sequence[str], survivor: str) -> None:
    """Everything held for ``merged_ids`` now belongs to ``survivor``; for one-row-per-key tables the newest
    row wins."""
    ids = list(merged_ids)
    await directory.record_merge(conn, SCHEMA, tenant, ids, survivor)
    for table in ("notifications", "cases", "breaches", "consent_log"):
        await conn.execute(f"UPDATE notification.{table} SET customer_id = $3 WHERE tenant = $1 AND customer_id = ANY($2::text[])",
                           tenant, ids, survivor)
    await conn.execute(
        """INSERT INTO notification.consents AS c
               (tenant, customer_id, purpose, channel, consent_id, status, at, expires_at, wording_version, source)
           SELECT DISTINCT ON (purpose, channel) tenant, $3, purpose, channel, consent_id, status, at, expires_at,
                  wording_version, source
           FROM notification.consents WHERE tenant = $1 AND customer_id = ANY($2::text[])
           ORDER BY purpose, channel, at DESC
           ON CONFLICT (tenant, customer_id, purpose, channel) DO UPDATE SET consent_id = EXCLUDED.consent_id,
               status = EXCLUDED.status, at = EXCLUDED.at, expires_at = EXCLUDED.expires_at,
               wording_version = EXCLUDED.wording_version, source = EXCLUDED.source
           WHERE c.at < EXCLUDED.at""", tenant, ids, survivor)
    await conn.execute(
        """INSERT INTO notification.last_inbound AS l (tenant, customer_id, channel, at)
           SELECT tenant, $3, channel, max(at) FROM notification.last_inbound
           WHERE tenant = $1 AND customer_id = ANY($2::text[]) GROUP BY tenant, channel
           ON CONFLICT (tenant, customer_id, channel) DO UPDATE SET at = greatest(l.at, EXCLUDED.at)""",
        tenant, ids, survivor)
    await conn.execute(
        """INSERT INTO notification.preferences AS p (tenant, customer_id, data, updated_at)
           SELECT tenant, $3, data, updated_at FROM notification.preferences
           WHERE tenant = $1 AND customer_id = ANY($2::text[]) ORDER BY updated_at DESC LIMIT 1
           ON CONFLICT (tenant, customer_id) DO UPDATE SET data = EXCLUDED.data || p.data,
               updated_at = greatest(p.updated_at, EXCLUDED.updated_at)""", tenant, ids, survivor)
    for table in ("consents", "last_inbound", "preferences"):
        await conn.execute(f"DELETE FROM notification.{table} WHERE tenant = $1 AND customer_id = ANY($2::text[])", tenant, ids)


# ---- consent and preferences --------------------------------------------------------------------------------

async def record_consent(conn: asyncpg.Connection, tenant: str, customer_id: str, event_id: str, c: Consent) -> None:
    """Log the consent event and make it the current record for its purpose and channel unless a later one
    is already there (events may arrive out of order)."""
    await conn.execute(
        """INSERT INTO notification.consent_log (tenant, consent_id, customer_id, status, purpose, channel, at,
               expires_at, wording_version, source, event_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING""",
        tenant, c.consent_id, customer_id, c.status, c.purpose, c.channel, c.at, c.expires_at, c.wording_version,
        c.source, event_id)
    await conn.execute(
        """INSERT INTO notification.consents AS k (tenant, customer_id, purpose, channel, consent_id, status, at,
               expires_at, wording_version, source)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (tenant, customer_id, purpose, channel) DO UPDATE SET consent_id = EXCLUDED.consent_id,
               status = EXCLUDED.status, at = EXCLUDED.at, expires_at = EXCLUDED.expires_at,
               wording_version = EXCLUDED.wording_version, source = EXCLUDED.source
           WHERE k.at <= EXCLUDED.at""",
        tenant, customer_id, c.purpose, c.channel, c.consent_id, c.status, c.at, c.expires_at, c.wording_version,
        c.source)


async def merge_preferences(conn: asyncpg.Connection, tenant: str, customer_id: str, changes: dict, at: datetime) -> None:
    await conn.execute(
        """INSERT INTO notification.preferences AS p (tenant, customer_id, data, updated_at) VALUES ($1, $2, $3::jsonb, $4)
           ON CONFLICT (tenant, customer_id) DO UPDATE SET data = p.data || EXCLUDED.data,
               updated_at = greatest(p.updated_at, EXCLUDED.updated_at)""",
        tenant, customer_id, _json(changes), at)


# ---- support state ------------------------------------------------------------------------------------------

async def upsert_case(conn: asyncpg.Connection, tenant: str, case_id: str, customer_id: str, status: str,
                      fields: dict[str, Any], at: datetime) -> None:
    await conn.execute(
        """INSERT INTO notification.cases AS c (tenant, case_id, customer_id, status, complaint, channel,
               conversation_id, agent_id, subject, opened_at, updated_at)
           VALUES ($1, $2, $3, $4::text, coalesce($5::boolean, false), $6, $7, $8, $9,
                   CASE WHEN $4::text = 'open' THEN $10::timestamptz END, $10::timestamptz)
           ON CONFLICT (tenant, case_id) DO UPDATE SET customer_id = EXCLUDED.customer_id,
               status = CASE WHEN c.updated_at <= EXCLUDED.updated_at THEN EXCLUDED.status ELSE c.status END,
               complaint = coalesce($5::boolean, c.complaint), channel = coalesce(EXCLUDED.channel, c.channel),
               conversation_id = coalesce(EXCLUDED.conversation_id, c.conversation_id),
               agent_id = coalesce(EXCLUDED.agent_id, c.agent_id), subject = coalesce(EXCLUDED.subject, c.subject),
               opened_at = coalesce(c.opened_at, EXCLUDED.opened_at),
               updated_at = greatest(c.updated_at, EXCLUDED.updated_at)""",
        tenant, case_id, customer_id, status, fields.get("complaint"), fields.get("channel"),
        fields.get("conversation_id"), fields.get("agent_id"), fields.get("subject"), at)


async def case(conn: asyncpg.Connection, tenant: str, case_id: str) -> Any:
    return await conn.fetchrow("SELECT * FROM notification.cases WHERE tenant = $1 AND case_id = $2", tenant, case_id)


async def stale_cases(conn: asyncpg.Connection, tenant: str, older_than: datetime, limit: int = 500) -> list[Any]:
    """Open cases without an update since ``older_than`` that have not had a status update for that state."""
    return await conn.fetch(
        """SELECT * FROM notification.cases WHERE tenant = $1 AND status = 'open' AND updated_at <= $2
             AND stale_notified_for IS DISTINCT FROM updated_at ORDER BY updated_at LIMIT $3""",
        tenant, older_than, limit)


async def mark_stale_notified(conn: asyncpg.Connection, tenant: str, case_ids: Sequence[str]) -> None:
    await conn.execute(
        """UPDATE notification.cases SET stale_notified_for = updated_at
           WHERE tenant = $1 AND case_id = ANY($2::text[])""", tenant, list(case_ids))


async def tenants_with_open_cases(conn: asyncpg.Connection) -> list[str]:
    return [r["tenant"] for r in await conn.fetch("SELECT DISTINCT tenant FROM notification.cases WHERE status = 'open'")]


async def set_breach(conn: asyncpg.Connection, tenant: str, conversation_id: str, customer_id: str, at: datetime) -> None:
    await conn.execute(
        """INSERT INTO notification.breaches (tenant, conversation_id, customer_id, at) VALUES ($1, $2, $3, $4)
           ON CONFLICT DO NOTHING""", tenant, conversation_id, customer_id, at)


async def clear_breach(conn: asyncpg.Connection, tenant: str, conversation_id: str) -> None:
    await conn.execute("DELETE FROM notification.breaches WHERE tenant = $1 AND conversation_id = $2", tenant, conversation_id)


async def saw_inbound(conn: asyncpg.Connection, tenant: str, rows: Sequence[tuple[str, str, datetime]]) -> None:
    """(customer id, channel, at) of inbound messages; keeps the latest per customer and channel."""
    if not rows:
        return
    await conn.execute(
        """INSERT INTO notification.last_inbound AS l (tenant, customer_id, channel, at)
           SELECT $1, c, ch, max(a) FROM unnest($2::text[], $3::text[], $4::timestamptz[]) AS x(c, ch, a)
           GROUP BY c, ch
           ON CONFLICT (tenant, customer_id, channel) DO UPDATE SET at = greatest(l.at, EXCLUDED.at)""",
        tenant, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


# ---- recipients ---------------------------------------------------------------------------------------------

def _preferences(data: dict[str, Any], default_zone: str) -> Preferences:
    qh = data.get("quiet_hours")
    quiet = QuietHours(time.fromisoformat(qh["start"]), time.fromisoformat(qh["end"])) if qh else None
    return Preferences(language=data.get("language"), time_zone=data.get("time_zone") or default_zone,
                       quiet_hours=quiet, preferred_channel=data.get("preferred_channel"),
                       topics=dict(data.get("topics") or {}), display_name=data.get("display_name"))


async def recipients(conn: asyncpg.Connection, tenant: str, customer_ids: Sequence[str], now: datetime,
                     default_zone: str) -> dict[str, tuple[Recipient, dict[str, Any]]]:
    """Everything the decision pipeline needs for each customer, in one query per table; with the raw
    preferences (for defaults the caller applies, such as the tenant's quiet hours)."""
    ids = sorted(set(customer_ids))
    prefs = {r["customer_id"]: orjson.loads(r["data"]) for r in await conn.fetch(
        "SELECT customer_id, data FROM notification.preferences WHERE tenant = $1 AND customer_id = ANY($2::text[])",
        tenant, ids)}
    out = {c: (Recipient(c, [], _preferences(prefs.get(c, {}), default_zone), {}), prefs.get(c, {})) for c in ids}
    for r in await conn.fetch(
            """SELECT customer_id, purpose, channel, consent_id, status, at, expires_at, wording_version, source
               FROM notification.consents WHERE tenant = $1 AND customer_id = ANY($2::text[])""", tenant, ids):
        out[r["customer_id"]][0].consents.append(Consent(r["consent_id"], r["purpose"], r["channel"], r["status"],
                                                         r["at"], r["expires_at"], r["wording_version"], r["source"]))
    for r in await conn.fetch(
            """SELECT customer_id, id_type, id_value FROM notification.directory
               WHERE tenant = $1 AND customer_id = ANY($2::text[]) ORDER BY id_type, id_value""", tenant, ids):
        for channel in ADDRESS_CHANNELS.get(r["id_type"], ()):
            out[r["customer_id"]][0].addresses.setdefault(channel, r["id_value"])
    for c, (recipient, raw) in out.items():
        recipient.addresses.update(raw.get("addresses") or {})
    for r in await conn.fetch(
            """SELECT customer_id, count(*) FILTER (WHERE complaint) AS n FROM notification.cases
               WHERE tenant = $1 AND customer_id = ANY($2::text[]) AND status = 'open' GROUP BY customer_id""",
            tenant, ids):
        out[r["customer_id"]][0].open_complaints = r["n"]
    for r in await conn.fetch(
            """SELECT customer_id, count(*) AS n FROM notification.breaches
               WHERE tenant = $1 AND customer_id = ANY($2::text[]) GROUP BY customer_id""", tenant, ids):
        out[r["customer_id"]][0].breached_slas = r["n"]
    for r in await conn.fetch(
            """SELECT customer_id, channel, at FROM notification.last_inbound
               WHERE tenant = $1 AND customer_id = ANY($2::text[])""", tenant, ids):
        out[r["customer_id"]][0].last_inbound[r["channel"]] = r["at"]
    for r in await conn.fetch(
            """SELECT customer_id, sent_at, trigger, coalesce((payload->>'transactional')::boolean, false) AS tx
               FROM notification.notifications
               WHERE tenant = $1 AND customer_id = ANY($2::text[]) AND sent_at >= $3""",
            tenant, ids, now - CAP_HORIZON):
        out[r["customer_id"]][0].past_sends.append(PastSend(r["sent_at"], r["trigger"], r["tx"]))
    return out


# ---- notifications ------------------------------------------------------------------------------------------

async def insert_notification(conn: asyncpg.Connection, tenant: str, customer_id: str, trigger: str, instance: str,
                              purpose: str, status: str, due_at: datetime, payload: dict, now: datetime,
                              digest_key: str | None = None) -> uuid.UUID | None:
    """A new notification; None when the trigger instance already has one (a redelivery or a repeat)."""
    return await conn.fetchval(
        """INSERT INTO notification.notifications (tenant, notification_id, customer_id, trigger, trigger_instance,
               digest_key, purpose, status, due_at, payload, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $11)
           ON CONFLICT (tenant, trigger, trigger_instance) DO NOTHING RETURNING notification_id""",
        tenant, uuid.uuid5(uuid.NAMESPACE_URL, f"touchpoint/notification/{tenant}/{trigger}/{instance}"),
        customer_id, trigger, instance, digest_key, purpose, status, due_at, _json(payload), now)


async def open_digest(conn: asyncpg.Connection, tenant: str, trigger: str, digest_key: str, now: datetime) -> Any:
    """The digest later events of ``digest_key`` join: its window has not closed and no send was tried (a
    retried message keeps the content its idempotency key was first sent with)."""
    return await conn.fetchrow(
        """SELECT notification_id, payload FROM notification.notifications
           WHERE tenant = $1 AND trigger = $2 AND digest_key = $3 AND status = 'scheduled' AND due_at > $4
             AND attempt = 0 FOR UPDATE""",
        tenant, trigger, digest_key, now)


async def set_payload(conn: asyncpg.Connection, tenant: str, notification_id: uuid.UUID, payload: dict, now: datetime) -> None:
    await conn.execute(
        """UPDATE notification.notifications SET payload = $3::jsonb, updated_at = $4
           WHERE tenant = $1 AND notification_id = $2""", tenant, notification_id, _json(payload), now)


async def count_recent(conn: asyncpg.Connection, tenant: str, customer_id: str, trigger: str, since: datetime) -> int:
    """Notifications of ``trigger`` for the customer created since ``since`` that were not suppressed."""
    return await conn.fetchval(
        """SELECT count(*) FROM notification.notifications WHERE tenant = $1 AND customer_id = $2 AND trigger = $3
             AND created_at >= $4 AND status <> 'suppressed'""", tenant, customer_id, trigger, since)


async def pending_for_case(conn: asyncpg.Connection, tenant: str, case_id: str) -> list[Any]:
    return await conn.fetch(
        """SELECT * FROM notification.notifications WHERE tenant = $1 AND payload->>'case_id' = $2
             AND status IN ('scheduled', 'held') FOR UPDATE""", tenant, case_id)


async def claim_due(conn: asyncpg.Connection, now: datetime, limit: int) -> list[Any]:
    """Due notifications, locked for this transaction; other instances skip them."""
    return await conn.fetch(
        """SELECT * FROM notification.notifications WHERE status IN ('scheduled', 'held') AND due_at <= $1
           ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED""", now, limit)


async def release_in_doubt(conn: asyncpg.Connection, now: datetime) -> list[Any]:
    """Notifications whose sending instance lost its lease (it died between "send" and "mark sent"): due
    again at once; their next send reuses the attempt's idempotency key."""
    return await conn.fetch(
        """UPDATE notification.notifications SET status = 'scheduled', due_at = $1, lease_until = NULL, updated_at = $1
           WHERE notification_id IN (SELECT notification_id FROM notification.notifications
                                     WHERE status = 'sending' AND lease_until < $1 FOR UPDATE SKIP LOCKED)
           RETURNING tenant, notification_id, channel""", now)


async def update_notifications(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Apply decided state to notifications: each dict has tenant, notification_id and the new status, due_at,
    lease_until, channel, consent_id, language, provider_message_id, sent_at, payload, updated_at."""
    if not rows:
        return
    await conn.execute(
        """UPDATE notification.notifications n SET status = x.status, due_at = x.due_at, lease_until = x.lease_until,
               channel = coalesce(x.channel, n.channel), consent_id = coalesce(x.consent_id, n.consent_id),
               language = coalesce(x.language, n.language),
               provider_message_id = coalesce(x.provider_message_id, n.provider_message_id),
               sent_at = coalesce(x.sent_at, n.sent_at), payload = x.payload::jsonb, updated_at = x.updated_at,
               attempt = n.attempt + x.attempt_inc
           FROM unnest($1::text[], $2::uuid[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::text[],
                       $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::text[], $12::timestamptz[],
                       $13::int[])
                AS x(tenant, notification_id, status, due_at, lease_until, channel, consent_id, language,
                     provider_message_id, sent_at, payload, updated_at, attempt_inc)
           WHERE n.tenant = x.tenant AND n.notification_id = x.notification_id""",
        *[[r.get(k) for r in rows] for k in ("tenant", "notification_id", "status", "due_at", "lease_until",
                                             "channel", "consent_id", "language", "provider_message_id",
                                             "sent_at")],
        [_json(r["payload"]) for r in rows], [r["updated_at"] for r in rows], [r.get("attempt_inc", 0) for r in rows])


async def add_decisions(conn: asyncpg.Connection, rows: Sequence[tuple]) -> None:
    """(tenant, notification id, at, step, outcome, reason, detail, channel, consent id) rows."""
    if not rows:
        return
    await conn.execute(
        """INSERT INTO notification.decisions (tenant, notification_id, at, step, outcome, reason, detail, channel, consent_id)
           SELECT * FROM unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],
                                $7::text[], $8::text[], $9::text[])""",
        *[[r[i] for r in rows] for i in range(9)])


async def start_attempts(conn: asyncpg.Connection, rows: Sequence[tuple[str, uuid.UUID, str, datetime]]) -> None:
    """(tenant, notification id, channel, at): the attempt's key is stable, ``tries`` counts sends with it."""
    if not rows:
        return
    await conn.execute(
        """INSERT INTO notification.attempts AS a (tenant, notification_id, channel, idempotency_key, state, started_at)
           SELECT t, n, c, n::text || ':' || c, 'in_doubt', s
           FROM unnest($1::text[], $2::uuid[], $3::text[], $4::timestamptz[]) AS x(t, n, c, s)
           ON CONFLICT (tenant, notification_id, channel) DO UPDATE SET tries = a.tries + 1, state = 'in_doubt',
               error = NULL, finished_at = NULL""",
        *[[r[i] for r in rows] for i in range(4)])


async def finish_attempts(conn: asyncpg.Connection, rows: Sequence[tuple]) -> None:
    """(tenant, notification id, channel, state, provider message id, error, at) rows."""
    if not rows:
        return
    await conn.execute(
        """UPDATE notification.attempts a SET state = x.s, provider_message_id = x.p, error = x.e, finished_at = x.f
           FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])
                AS x(t, n, c, s, p, e, f)
           WHERE a.tenant = x.t AND a.notification_id = x.n AND a.channel = x.c""",
        *[[r[i] for r in rows] for i in range(7)])


async def attempt_tries(conn: asyncpg.Connection, tenant: str, notification_id: uuid.UUID, channel: str) -> int:
    return await conn.fetchval(
        """SELECT coalesce(max(tries), 0) FROM notification.attempts
           WHERE tenant = $1 AND notification_id = $2 AND channel = $3""", tenant, notification_id, channel)


async def by_provider_id(conn: asyncpg.Connection, provider_ids: Sequence[str]) -> list[Any]:
    return await conn.fetch(
        """SELECT * FROM notification.notifications WHERE provider_message_id = ANY($1::text[]) FOR UPDATE""",
        list(provider_ids))


async def notification(conn: asyncpg.Connection, tenant: str, notification_id: uuid.UUID) -> Any:
    return await conn.fetchrow(
        "SELECT * FROM notification.notifications WHERE tenant = $1 AND notification_id = $2", tenant, notification_id)


async def record_answer(conn: asyncpg.Connection, tenant: str, notification_id: uuid.UUID, solved: bool,
                        at: datetime) -> bool:
    """False when the notification was answered before (the first answer counts)."""
    return bool(await conn.fetchval(
        """INSERT INTO notification.answers (tenant, notification_id, solved, answered_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT DO NOTHING RETURNING true""", tenant, notification_id, solved, at))


async def customer_notifications(conn: asyncpg.Connection, tenant: str, customer_id: str, limit: int) -> list[Any]:
    return await conn.fetch(
        """SELECT * FROM notification.notifications WHERE tenant = $1 AND customer_id = $2
           ORDER BY created_at DESC, notification_id LIMIT $3""", tenant, customer_id, limit)


async def decisions_of(conn: asyncpg.Connection, tenant: str, ids: Sequence[uuid.UUID]) -> list[Any]:
    return await conn.fetch(
        """SELECT * FROM notification.decisions WHERE tenant = $1 AND notification_id = ANY($2::uuid[])
           ORDER BY seq""", tenant, list(ids))


async def attempts_of(conn: asyncpg.Connection, tenant: str, ids: Sequence[uuid.UUID]) -> list[Any]:
    return await conn.fetch(
        """SELECT * FROM notification.attempts WHERE tenant = $1 AND notification_id = ANY($2::uuid[])
           ORDER BY started_at""", tenant, list(ids))


async def consent_record(conn: asyncpg.Connection, tenant: str, consent_ids: Sequence[str]) -> list[Any]:
    return await conn.fetch(
        """SELECT * FROM notification.consent_log WHERE tenant = $1 AND consent_id = ANY($2::text[])
           ORDER BY at""", tenant, list(consent_ids))
