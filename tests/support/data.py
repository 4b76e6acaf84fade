"""Synthetic interactions with a known answer: which person each event belongs to.

Every person has an email, a phone, a contract and a social handle. Most events carry only the identifier
their channel implies (written in varying formats), so a person first appears as several customers; one
event per person carries all identifiers and links them, so the expected end state is one customer per
person holding all of that person's events.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

CHANNEL_IDENTIFIERS = {
    "email": ("email",), "phone": ("phone",), "sms": ("phone",), "whatsapp": ("whatsapp",),
    "chat": ("email",), "twitter": ("twitter",), "facebook": ("email",), "store": ("contract_id",),
    "letter": ("contract_id",), "app": ("email", "contract_id"), "web": ("email",),
}
SOURCES = {"email": "mail-gw", "phone": "pbx", "sms": "sms-gw", "whatsapp": "wa-gw", "chat": "chat",
           "twitter": "social", "facebook": "social", "store": "pos", "letter": "dms", "app": "app", "web": "web"}
BASE = datetime(2026, 1, 1, tzinfo=timezone.utc)


@dataclass
class Event:
    id: str
    source: str
    tenant: str
    person: int
    data: dict

    def structured(self) -> dict:
        return {"specversion": "1.0", "id": self.id, "source": self.source, "tenant": self.tenant,
                "type": "touchpoint.interaction.occurred.v1", "data": self.data}


def identifiers_of(person: int, tenant: str, rng: random.Random) -> dict[str, list[str]]:
    """Each identifier in the forms a real upstream might send it."""
    digits = f"{person:07d}"
    email = f"person{person}.{tenant}@example.org"
    return {
        "email": [email, email.upper(), f"  {email.capitalize()} "],
        "phone": [f"+49 30 {digits}", f"030{digits}", f"(030) {digits[:3]} {digits[3:]}"],
        "whatsapp": [f"+4930{digits}"],
        "twitter": [f"@Person{person}{tenant}", f"person{person}{tenant}"],
        "contract_id": [f"C-{tenant}-{person}"],
    }


def generate(tenant: str, people: int = 300, events: int = 2000, seed: int = 7) -> list[Event]:
    rng = random.Random(seed)
    per_person = [events // people] * people
    for i in rng.sample(range(people), events - sum(per_person)):
        per_person[i] += 1
    out: list[Event] = []
    for person, count in enumerate(per_person):
        forms = identifiers_of(person, tenant, rng)
        linker = rng.randrange(count)
        for k in range(count):
            channel = rng.choice(list(CHANNEL_IDENTIFIERS))
            types = list(forms) if k == linker else list(CHANNEL_IDENTIFIERS[channel])
            idents = [{"type": t if t != "whatsapp" else "phone", "value": rng.choice(forms[t])} for t in types]
            occurred = BASE + timedelta(minutes=rng.randrange(0, 500_000))
            data = {"channel": channel, "direction": rng.choice(["inbound", "inbound", "outbound"]),
                    "identifiers": idents, "occurred_at": occurred.isoformat(), "subject": f"topic {k}",
                    "text": "x" * rng.randrange(200, 900), "tags": ["synthetic"]}
            out.append(Event(str(uuid.UUID(int=rng.getrandbits(128))), SOURCES[channel], tenant, person, data))
    rng.shuffle(out)
    return out


def expected_partition(events: list[Event]) -> set[frozenset[str]]:
    groups: dict[int, set[str]] = {}
    for e in events:
        groups.setdefault(e.person, set()).add(e.id)
    return {frozenset(g) for g in groups.values()}
