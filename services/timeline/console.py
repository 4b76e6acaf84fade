"""What the agent console shows about a customer, derived from what the timeline holds.

Pure functions over stored rows and entries: the search terms of a query, the consent state per purpose and
channel, the newest preferences, the last score per feedback metric, each notification's latest decision and
the conversations still open. Live details of open conversations (queue position, SLA clocks) come from the
routing service; ``services.timeline.console_api`` fetches them.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Iterable

from shared.cloudevents import InvalidEvent
from shared.contracts.interaction import Identifier
from shared.identifiers import normalise_identifier

# Identifier types a search value is tried as, besides its literal value.
SEARCH_TYPES = ("email", "phone", "whatsapp", "twitter", "instagram")
PHONE_TYPES = {"phone", "whatsapp"}
NAME_MIN = 2
CLOSED = {"routing.conversation_resolved"}


def search_terms(query: str, region: str) -> tuple[list[str], str | None]:
    """(identifier values to look up, name prefix or None) for a search box query.

    The literal value is always tried (contract numbers, handles, ids), with its normalised form as an e-mail
    address, a phone number and a handle; a query of letters and spaces is also a name prefix."""
    q = query.strip()
    values = {q, q.lower(), q.lstrip("@")}
    looks_like_number = re.fullmatch(r"\+?[\d\s()./-]{4,}", q) is not None
    for id_type in SEARCH_TYPES:
        if id_type in PHONE_TYPES and not looks_like_number:
            continue
        try:
            values.add(normalise_identifier(Identifier(type=id_type, value=q), region).value)
        except (InvalidEvent, ValueError):
            continue
    name = q if len(q) >= NAME_MIN and re.fullmatch(r"[^\d@+]+", q) else None
    return sorted(v for v in values if v), name


def subjects(customer_id: str, merged_ids: Iterable[str], identifiers: Iterable[str]) -> list[str]:
    """The consent subjects a customer's consent and preferences can be recorded under."""
    return [f"id:{c}" for c in (customer_id, *merged_ids)] + list(identifiers)


def consent_state(rows: Iterable[Any], now: datetime) -> list[dict]:
    """The current consent per (purpose, channel), newest record across subjects (a withdrawal wins a tie);
    ``state`` is ``granted``, ``withdrawn`` or ``expired``."""
    newest: dict[tuple[str, str], Any] = {}
    for r in rows:
        key = (r["purpose"], r["channel"])
        kept = newest.get(key)
        if kept is None or (r["occurred_at"], not r["granted"]) > (kept["occurred_at"], not kept["granted"]):
            newest[key] = r
    result = []
    for (purpose, channel), r in sorted(newest.items()):
        expired = r["granted"] and r["expires_at"] is not None and r["expires_at"] <= now
        state = "expired" if expired else "granted" if r["granted"] else "withdrawn"
        result.append({"purpose": purpose, "channel": channel, "state": state, "consent_id": r["consent_id"],
                       "wording_version": r["wording_version"], "source": r["source"],
                       "at": r["occurred_at"].isoformat(),
                       "expires_at": r["expires_at"].isoformat() if r["expires_at"] else None})
    return result


def preferences(field_sets: Iterable[dict]) -> dict[str, Any]:
    """The newest value of each preference across subjects (``{field: {"value", "at"}}`` each)."""
    newest: dict[str, dict] = {}
    for fields in field_sets:
        for name, kept in fields.items():
            if name not in newest or kept["at"] > newest[name]["at"]:
                newest[name] = kept
    return {name: v["value"] for name, v in sorted(newest.items())}


def last_scores(feedback: Iterable[dict]) -> dict[str, dict]:
    """Per metric (nps, csat, ces), the newest scored response among feedback entries (newest first)."""
    scores: dict[str, dict] = {}
    for entry in feedback:
        d = entry.get("details") or {}
        if d.get("event") != "responded" or d.get("metric") is None or d.get("score") is None:
            continue
        scores.setdefault(d["metric"], {"score": d["score"], "at": entry["occurred_at"],
                                        "survey_id": d.get("survey_id")})
    return scores


def notification_decisions(entries: Iterable[dict], limit: int = 20) -> list[dict]:
    """Each notification's latest event (newest notifications first): what was decided and why."""
    latest: dict[str, dict] = {}
    for entry in entries:  # newest first
        d = entry.get("details") or {}
        nid = d.get("notification_id")
        if nid is None or nid in latest:
            continue
        latest[nid] = {
            "notification_id": nid, "decision": d.get("event"), "at": entry["occurred_at"],
            "trigger": d.get("trigger"), "purpose": d.get("purpose"), "channel": d.get("channel"),
            "reason": d.get("reason"), "detail": d.get("detail"), "step": d.get("step"),
            "release_at": d.get("release_at"), "consent_id": d.get("consent_id"), "template": d.get("template"),
        }
        if len(latest) == limit:
            break
    return list(latest.values())


def open_conversations(entries: Iterable[dict]) -> list[dict]:
    """Conversations whose newest routing entry (entries newest first) is not a resolution, newest first."""
    seen: set[str] = set()
    result = []
    for entry in entries:
        cid = entry.get("conversation_id")
        if cid is None or cid in seen:
            continue
        seen.add(cid)
        if entry["kind"] in CLOSED:
            continue
        d = entry.get("details") or {}
        result.append({"conversation_id": cid, "channel": entry.get("channel"), "last_event": entry["kind"],
                       "at": entry["occurred_at"], "agent_id": entry.get("agent_id"), "queue": d.get("queue"),
                       "position": d.get("position"), "eta_s": d.get("eta_s")})
    return result
