"""Deterministic, realistic upstream events for the benchmark.

Event ``n`` of stream ``s`` is a pure function of ``(s, n)`` (so any event can be rebuilt and replayed), and its
id carries the *intended* send time: ``bench-<stream>-<n>-<intended unix ns>``. Every observer computes latency
from that time, never from when the generator actually managed to send (no coordinated omission).

The mix follows ``tests/support/data.py``: a large pool of people (skewed: some people are much more active
than others), a channel per event that implies which identifier it carries, identifiers written in varying
formats, and about 3 % of events carrying all of a person's identifiers, which makes identity link (merge) the
customers that person first appeared as. Values are ~1 KB of JSON.
"""

from __future__ import annotations

from datetime import datetime, timezone

import orjson

from tests.support.data import CHANNEL_IDENTIFIERS, SOURCES, identifiers_of

TENANT = "bench"
EVENT_TYPE = "touchpoint.interaction.occurred.v1"
PEOPLE = 200_000
LINKER_PER_256 = 8  # ~3 % of events carry every identifier of their person
CHANNELS = tuple(CHANNEL_IDENTIFIERS)
_MASK = (1 << 64) - 1
_WORDS = ("order delivery invoice refund contract tariff appointment password address complaint thanks question "
          "upgrade cancel roaming router outage payment reminder discount voucher meter reading").split()
_TEXT = " ".join(_WORDS[(i * 7 + i // 3) % len(_WORDS)] for i in range(600))
_FORMS_CACHE: dict[int, dict[str, list[str]]] = {}


def _mix(x: int) -> int:
    """splitmix64: a cheap, well-spread hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _forms(person: int) -> dict[str, list[str]]:
    forms = _FORMS_CACHE.get(person)
    if forms is None:
        if len(_FORMS_CACHE) > 50_000:
            _FORMS_CACHE.clear()
        forms = _FORMS_CACHE[person] = identifiers_of(person, TENANT, None)
    return forms


def event_id(stream: int, n: int, intended_ns: int) -> str:
    return f"bench-{stream}-{n}-{intended_ns}"


def parse_event_id(value: str) -> tuple[int, int, int] | None:
    """(stream, n, intended ns) of a benchmark event id, None for anything else."""
    if not value.startswith("bench-"):
        return None
    try:
        _, stream, n, ns = value.split("-", 3)
        return int(stream), int(n), int(ns)
    except ValueError:
        return None


def event_data(stream: int, n: int, intended_ns: int, people: int = PEOPLE) -> tuple[str, dict]:
    """(source, data) of event ``n`` of ``stream``."""
    h = _mix((stream << 40) ^ n)
    u = (h & 0xFFFFFFFF) / 4294967296.0
    person = int(people * u * u)  # skewed towards low ids: active customers appear much more often
    channel = CHANNELS[(h >> 32) % len(CHANNELS)]
    forms = _forms(person)
    types = list(forms) if ((h >> 40) & 0xFF) < LINKER_PER_256 else CHANNEL_IDENTIFIERS[channel]
    g = _mix(h)
    idents = []
    for k, t in enumerate(types):
        options = forms[t]
        idents.append({"type": "phone" if t == "whatsapp" else t, "value": options[(g >> (4 * k)) % len(options)]})
    start = (g >> 24) % 1500
    occurred = datetime.fromtimestamp((intended_ns - ((g >> 40) % 5000) * 1_000_000) / 1e9, timezone.utc)
    data = {
        "channel": channel,
        "direction": "outbound" if (g >> 50) % 3 == 0 else "inbound",
        "identifiers": idents,
        "occurred_at": occurred.isoformat(),
        "conversation_id": f"conv-{person}-{(g >> 12) % 40}",
        "subject": f"{_WORDS[(g >> 8) % len(_WORDS)]} {_WORDS[(g >> 16) % len(_WORDS)]}",
        "text": _TEXT[start:start + 450 + (g >> 56) % 400],
        "language": "de" if g & 1 else "en",
        "tags": ["bench", channel],
    }
    return SOURCES[channel], data


def kafka_record(stream: int, n: int, intended_ns: int) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) in binary CloudEvents mode, as an upstream producer would write it."""
    source, data = event_data(stream, n, intended_ns)
    eid = event_id(stream, n, intended_ns)
    headers = [("ce_specversion", b"1.0"), ("ce_id", eid.encode()), ("ce_source", source.encode()),
               ("ce_type", EVENT_TYPE.encode()), ("ce_tenant", TENANT.encode()),
               ("content-type", b"application/json")]
    return f"{source}/{eid}".encode(), orjson.dumps(data), headers


def structured(stream: int, n: int, intended_ns: int) -> dict:
    """The same event in structured mode, for ``POST /v1/events``."""
    source, data = event_data(stream, n, intended_ns)
    return {"specversion": "1.0", "id": event_id(stream, n, intended_ns), "source": source, "type": EVENT_TYPE,
            "tenant": TENANT, "data": data}
