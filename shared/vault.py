"""Per-subject data keys for personal fields, so that erasing a customer erases every copy (crypto-shredding).

Kafka topics are immutable logs: a customer's e-mail address in a retained record cannot be deleted. So the
personal fields of an interaction (identifier values, subject, text) never travel in the clear once Touchpoint
has them: they are *sealed*, encrypted with AES-256-GCM under a data key, and only the key is ever deleted.

- **Subjects.** A data key belongs to one subject: a tenant and the event's highest-priority identifier (the one
  its partition key is made from). Ingestion asks :meth:`Vault.subject_keys` for the subject's key (created on
  first use) and seals the event; later hops re-seal with the same key. Keys live only in PostgreSQL
  (``platform.data_keys``), under row-level security like every tenant table. A subject is stored as a SHA-256
  digest, and the key id (``kid``) is random, so neither says whose key it is once the key is gone.
- **Owners.** Identity records which customers each key's events were attributed to (``platform.key_owners``, see
  :func:`record_owners`). Erasing a customer (:func:`shred`) deletes every key owned by the customer or one of
  its aliases, in the erasure's transaction. A key shared with another customer (two people whose events were
  keyed by the same identifier) is deleted too: erasure wins over keeping the other customer's copies.
- **Wire format.** A sealed event names its key in the CloudEvents extension ``sealkey`` and carries the
  personal fields, removed from ``data``, as ``data.sealed`` = base64url(12-byte nonce + ciphertext of their
  JSON), authenticated with the tenant and key id. :meth:`Vault.open` restores them before validation, so the
  contracts' models stay as they are; it raises :class:`Shredded` when the key was shredded, and consumers
  then skip the event (it belongs to an erased customer), which is also what a replay or a rebuild does. An
  event naming a key that never existed is invalid (dead-lettered), not skipped.
- **Caching.** Readers cache keys (and their absence) for ``cache_seconds``; a process may thus still open an
  erased customer's events for that long after the erasure. Ingestion never seals from the cache: it looks the
  subject's key up for every batch, so nothing that arrives after an erasure is sealed under a deleted key.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import asyncpg
import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.cloudevents import CloudEvent, InvalidEvent

EXTENSION = "sealkey"
HEADER = "ce_" + EXTENSION
SEALED = "sealed"
# Personal fields per shape: interactions (every form) and timeline entries.
INTERACTION_FIELDS = ("identifiers", "subject", "text")
ENTRY_FIELDS = ("subject", "text")
MERGE_FIELDS = ("linking_identifiers",)   # identity graph changes: sealed under a key of the customer
SPLIT_FIELDS = ("identifiers",)
PROFILE_FIELDS = ("identifiers", "given_name", "family_name", "birth_date", "address", "national_id", "email",
                  "phone")


class Shredded(Exception):
    """The event's key was deleted: its customer was erased. Consumers skip the event."""


@dataclass(frozen=True, slots=True)
class DataKey:
    kid: str
    key: bytes = b""  # never printed: repr shows the id only

    def __repr__(self) -> str:
        return f"DataKey({self.kid!r})"


UNKNOWN = DataKey("")  # cache marker: no such key was ever made


def subject_digest(tenant: str, subject: str) -> str:
    return hashlib.sha256(f"{tenant}\x00{subject}".encode()).hexdigest()


def seal(event: CloudEvent, tenant: str, key: DataKey, fields: Sequence[str]) -> CloudEvent:
    """Move ``fields`` of ``event.data`` (a dict) into ``data.sealed`` under ``key``; returns the event."""
    event.data = seal_data(event.data, tenant, key, fields)
    event.extensions[EXTENSION] = key.kid
    return event


def seal_data(data: dict, tenant: str, key: DataKey, fields: Sequence[str]) -> dict:
    """``data`` without ``fields``, which are sealed under ``key`` in ``data.sealed`` (the caller names the key
    in the ``sealkey`` attribute)."""
    out = dict(data)
    plain = {f: out.pop(f) for f in fields if f in out}
    nonce = os.urandom(12)
    box = AESGCM(key.key).encrypt(nonce, orjson.dumps(plain), _aad(tenant, key.kid))
    out[SEALED] = base64.urlsafe_b64encode(nonce + box).decode()
    return out


def unseal(data: dict, tenant: str, key: DataKey) -> dict:
    """``data`` with its sealed fields restored. Raises InvalidEvent when the box is not ours or was altered."""
    out = dict(data)
    box = out.pop(SEALED, None)
    if not isinstance(box, str):
        raise InvalidEvent("invalid_sealed_data", "a sealed event must carry data.sealed")
    try:
        raw = base64.urlsafe_b64decode(box)
        plain = orjson.loads(AESGCM(key.key).decrypt(raw[:12], raw[12:], _aad(tenant, key.kid)))
    except (ValueError, InvalidTag, orjson.JSONDecodeError):
        raise InvalidEvent("invalid_sealed_data", "data.sealed does not open with its key") from None
    if not isinstance(plain, dict):
        raise InvalidEvent("invalid_sealed_data", "data.sealed does not hold an object")
    out.update(plain)
    return out


def _aad(tenant: str, kid: str) -> bytes:
    return f"touchpoint-seal-v1\x00{tenant}\x00{kid}".encode()


def record_kids(records: Iterable[Any]) -> set[tuple[str, str]]:
    """(tenant, kid) named by binary-mode records' headers."""
    out = set()
    for r in records:
        headers = dict((k, v) for k, v in (r.headers or ()) if k in (HEADER, "ce_tenant"))
        if HEADER in headers and "ce_tenant" in headers:
            out.add((headers["ce_tenant"].decode("utf-8", "replace"), headers[HEADER].decode("utf-8", "replace")))
    return out


# Look-ups of a batch's keys probe the unique index once per key: OFFSET 0 keeps each subquery from being planned
# as a join, which the planner ran as a scan of every key (row-level security filter included) per batch.
_PROBE_SUBJECT = (" CROSS JOIN LATERAL (SELECT k.tenant, k.subject, k.kid, k.key FROM platform.data_keys k"
                  "   WHERE k.tenant = w.tenant AND k.subject = w.subject OFFSET 0) k")


class Vault:
    """Data keys: created per subject for sealing, looked up by id (cached) for opening."""

    def __init__(self, pool: asyncpg.Pool, cache_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, cache_limit: int = 100_000) -> None:
        self.pool = pool
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[DataKey | None, float]] = {}  # None: shredded
        # Expired entries are dropped once per cache period, and whenever the cache outgrows its limit (at least
        # twice the entries left after the last pruning, so pruning costs O(1) per entry), by every path that
        # adds to it: the cache holds about the keys of the last one or two periods, not every key met since the
        # limit was last reached.
        self._cache_limit = cache_limit
        self._prune_above = cache_limit
        self._next_prune = clock() + cache_seconds

    async def subject_keys(self, subjects: Iterable[tuple[str, str]]) -> dict[tuple[str, str], DataKey]:
        """The key of each (tenant, subject), created when missing. One round trip; never cached."""
        wanted = sorted(set(subjects))
        if not wanted:
            return {}
        tenants = [t for t, _ in wanted]
        digests = [subject_digest(t, s) for t, s in wanted]
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "WITH wanted AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[])"
                "   AS w(tenant, subject, kid, key)),"
                " added AS (INSERT INTO platform.data_keys (tenant, subject, kid, key) SELECT * FROM wanted"
                "   ON CONFLICT (tenant, subject) DO NOTHING RETURNING tenant, subject, kid, key)"
                " SELECT * FROM added UNION ALL"
                " SELECT k.* FROM wanted w" + _PROBE_SUBJECT,
                tenants, digests, [secrets.token_urlsafe(16) for _ in wanted],
                [AESGCM.generate_key(bit_length=256) for _ in wanted])
            found = {(r["tenant"], r["subject"]): DataKey(r["kid"], bytes(r["key"])) for r in rows}
            missing = [(t, d) for t, d in zip(tenants, digests) if (t, d) not in found]
            if missing:  # inserted by a concurrent transaction after this statement's snapshot: read again
                rows = await conn.fetch(
                    "SELECT k.* FROM unnest($1::text[], $2::text[]) AS w(tenant, subject)" + _PROBE_SUBJECT,
                    [t for t, _ in missing], [d for _, d in missing])
                found.update({(r["tenant"], r["subject"]): DataKey(r["kid"], bytes(r["key"])) for r in rows})
        out = {}
        expires = self.clock() + self.cache_seconds
        for (tenant, subject), digest in zip(wanted, digests):
            key = found[(tenant, digest)]
            out[(tenant, subject)] = key
            self._cache[(tenant, key.kid)] = (key, expires)
        self._prune()
        return out

    async def load(self, kids: Iterable[tuple[str, str]]) -> None:
        """Fetch the keys (tenant, kid) not cached, in one query; absent ones are remembered as shredded.

        Every key asked for is at hand for :meth:`key` and :meth:`open` when this returns, until the caller next
        awaits (another task's call may then prune it): open what needs it before awaiting anything else."""
        now = self.clock()
        wanted = set(kids)
        todo = sorted({k for k in wanted if k not in self._cache or self._cache[k][1] < now})
        if not todo:
            return
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT k.* FROM unnest($1::text[], $2::text[]) AS w(tenant, kid)"
                " CROSS JOIN LATERAL (SELECT k.tenant, k.kid, k.key FROM platform.data_keys k"
                "   WHERE k.tenant = w.tenant AND k.kid = w.kid OFFSET 0) k",
                [t for t, _ in todo], [k for _, k in todo])
            found: dict[tuple[str, str], DataKey | None] = {
                (r["tenant"], r["kid"]): DataKey(r["kid"], bytes(r["key"])) for r in rows}
            rest = [k for k in todo if k not in found]
            if rest:
                gone = await conn.fetch(
                    "SELECT s.* FROM unnest($1::text[], $2::text[]) AS w(tenant, kid)"
                    " CROSS JOIN LATERAL (SELECT s.tenant, s.kid FROM platform.shredded_keys s"
                    "   WHERE s.tenant = w.tenant AND s.kid = w.kid OFFSET 0) s",
                    [t for t, _ in rest], [k for _, k in rest])
                found.update({(r["tenant"], r["kid"]): None for r in gone})
        expires = self.clock() + self.cache_seconds
        for k in todo:
            self._cache[k] = (found.get(k, UNKNOWN), expires)
        self._prune(keep=wanted)  # a wanted key found fresh before the query may have expired during it

    async def prefetch(self, records: Iterable[Any]) -> None:
        """Load the keys a batch of binary-mode records names, so that :meth:`open` needs no round trip."""
        await self.load(record_kids(records))

    def key(self, tenant: str, kid: str) -> DataKey | None:
        """A key loaded before, None when it was shredded; raises KeyError when it was never loaded or does
        not exist."""
        key = self._cache[(tenant, kid)][0]
        if key is UNKNOWN:
            raise KeyError(kid)
        return key

    def open(self, event: CloudEvent) -> CloudEvent:
        """Restore a sealed event's personal fields (a plain event is returned as is). Its key must have been
        loaded. Raises :class:`Shredded` when the key was deleted, InvalidEvent when the seal is broken."""
        kid = event.extensions.get(EXTENSION)
        if kid is None:
            return event
        if not event.tenant or not isinstance(event.data, dict):
            raise InvalidEvent("invalid_sealed_data", "a sealed event needs a tenant and an object as data", event.id)
        try:
            key = self.key(event.tenant, kid)
        except KeyError:
            raise InvalidEvent("invalid_sealed_data", "the event's key does not exist", event.id) from None
        if key is None:
            raise Shredded(event.id)
        event.data = unseal(event.data, event.tenant, key)
        return event

    def _prune(self, keep: set[tuple[str, str]] = frozenset()) -> None:
        """Drop expired entries except ``keep`` (the keys a caller has just been promised)."""
        now = self.clock()
        if now < self._next_prune and len(self._cache) <= self._prune_above:
            return
        self._cache = {k: v for k, v in self._cache.items() if v[1] >= now or k in keep}
        self._prune_above = max(self._cache_limit, 2 * len(self._cache))
        self._next_prune = now + self.cache_seconds

    def cached(self) -> int:
        """How many keys (and shredded key ids) are cached."""
        return len(self._cache)


async def record_owners(conn: asyncpg.Connection, rows: Iterable[tuple[str, str, str]]) -> None:
    """Note that events sealed under (tenant, kid) were attributed to a customer: (tenant, kid, customer_id)."""
    rows = sorted(set(rows))
    if rows:
        await conn.execute(
            "INSERT INTO platform.key_owners (tenant, kid, customer_id)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) ON CONFLICT DO NOTHING",
            [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


async def owned_keys(conn: asyncpg.Connection, customers: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """One key id owned by each (tenant, customer) that owns any: what its identity graph changes are sealed
    under, so that they become unreadable with the customer's erasure."""
    customers = sorted(set(customers))
    if not customers:
        return {}
    rows = await conn.fetch(
        "SELECT DISTINCT ON (o.tenant, o.customer_id) o.tenant, o.customer_id, o.kid FROM platform.key_owners o"
        " JOIN unnest($1::text[], $2::text[]) AS w(tenant, customer_id) USING (tenant, customer_id)"
        " ORDER BY o.tenant, o.customer_id, o.kid", [c[0] for c in customers], [c[1] for c in customers])
    return {(r["tenant"], r["customer_id"]): r["kid"] for r in rows}


async def shred(conn: asyncpg.Connection, tenant: str, customer_ids: Sequence[str]) -> int:
    """Delete every key the customers own (in the caller's transaction) and note their ids as shredded, so
    that their events are told apart from events naming a key that never existed; returns how many."""
    deleted = await conn.fetchval(
        "WITH gone AS (DELETE FROM platform.data_keys k USING platform.key_owners o"
        " WHERE o.tenant = $1 AND o.customer_id = ANY($2::text[]) AND k.tenant = o.tenant AND k.kid = o.kid"
        " RETURNING k.tenant, k.kid),"
        " noted AS (INSERT INTO platform.shredded_keys (tenant, kid) SELECT DISTINCT tenant, kid FROM gone"
        " ON CONFLICT DO NOTHING RETURNING kid) SELECT count(*) FROM noted", tenant, list(customer_ids))
    await conn.execute("DELETE FROM platform.key_owners WHERE tenant = $1 AND customer_id = ANY($2::text[])",
                       tenant, list(customer_ids))
    return deleted


async def describe(conn: asyncpg.Connection, tenant: str, kid: str) -> tuple[DataKey | None, Any]:
    """(the key, None) while it exists; (None, when it was shredded) after an erasure; (None, None) if it never
    existed."""
    row = await conn.fetchrow("SELECT kid, key FROM platform.data_keys WHERE tenant = $1 AND kid = $2", tenant, kid)
    if row is not None:
        return DataKey(row["kid"], bytes(row["key"])), None
    return None, await conn.fetchval("SELECT shredded_at FROM platform.shredded_keys WHERE tenant = $1 AND kid = $2",
                                     tenant, kid)


def aad(tenant: str, kid: str) -> bytes:
    """The associated data every box sealed under (tenant, kid) is authenticated with."""
    return _aad(tenant, kid)
