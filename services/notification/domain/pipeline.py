"""The decision pipeline: may this message go out now, on which channels, relying on which consent?

:func:`decide` runs the steps below in order; the first that says no decides, and its name and a machine reason
go into the :class:`~.model.Decision` (the lead records them on the ``suppressed``/``held`` events):

1. ``consent``: keep the candidate's channels that have an address and a valid consent for the purpose;
2. ``preferences``: a topic the customer opted out of suppresses everything but critical messages; the preferred
   channel moves ahead of the fallback channels (never ahead of the candidate's first channel);
3. ``support``: no marketing while a complaint is open or an SLA is breached;
4. ``quiet_hours``: hold until the recipient's quiet window ends;
5. ``caps``: frequency caps of non-transactional messages;
6. ``channel_window``: WhatsApp free-form only within 24 hours of the customer's last WhatsApp message, outside
   only with an approved template, otherwise WhatsApp leaves the plan;
7. ``send``: the first channel, the rest as fallback, and the consent record each relies on.

Everything is pure: same inputs, same decision, so a held notification decided again at ``release_at`` sees the
world as it is then. De-duplication of trigger instances is the repository's unique key, not a step here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Iterable, Sequence

from services.notification.domain.caps import count_in_window, exceeded
from services.notification.domain.model import (CHANNELS, Candidate, CapRule, Consent, Decision, Recipient,
                                                require_aware)
from services.notification.domain.quiet_hours import in_quiet_hours, quiet_hours_end

WHATSAPP_WINDOW = timedelta(hours=24)
# When no channel is left after the consent step, the reported reason is the first of these that any channel
# had: an explicit withdrawal tells more than a lapsed grant, which tells more than a missing address.
CONSENT_REASONS = ("consent_withdrawn", "consent_expired", "no_channel", "no_consent")

Plan = dict[str, Consent]   # channel -> consent it relies on, in sending order


def consent_check(consents: Iterable[Consent], purpose: str, channel: str,
                  now: datetime) -> tuple[Consent | None, str]:
    """The consent record ``channel`` may rely on for ``purpose`` at ``now`` with reason ``ok``, or None with
    ``no_consent``, ``consent_withdrawn`` or ``consent_expired``.

    A grant counts unless a withdrawal for the same channel or for "any" came later; at the same instant the
    more specific record wins and, equally specific, the withdrawal. Among the grants that count and have not
    expired (``expires_at`` after ``now``), a channel-specific one is chosen before an "any" one, then the latest.
    Channels outside CHANNELS have no consent: "any" means the notification channels only.
    """
    now = require_aware(now, "now")
    if channel not in CHANNELS:
        return None, "no_consent"
    records = [c for c in consents if c.covers(purpose, channel)]
    withdrawals = [c for c in records if not c.granted]
    live = [g for g in records if g.granted and not any(_withdraws(w, g, channel) for w in withdrawals)]
    valid = [g for g in live if g.expires_at is None or require_aware(g.expires_at) > now]
    if valid:
        return max(valid, key=lambda g: (g.channel == channel, require_aware(g.at))), "ok"
    if live:
        return None, "consent_expired"
    return None, "consent_withdrawn" if withdrawals else "no_consent"


def valid_consent(consents: Iterable[Consent], purpose: str, channel: str, now: datetime) -> Consent | None:
    """The consent record a send on ``channel`` for ``purpose`` relies on, or None (see :func:`consent_check`)."""
    return consent_check(consents, purpose, channel, now)[0]


def decide(candidate: Candidate, r: Recipient, now: datetime, caps: Sequence[CapRule]) -> Decision:
    """The decision for ``candidate`` to ``r`` at ``now`` under frequency ``caps`` (strictest first).

    ``send`` lists only channels with an address and a valid consent, each with its consent id; ``hold`` has a
    ``release_at`` after ``now``; ``suppress`` is final for this candidate. Raises ValueError for naive times.
    """
    now = require_aware(now, "now")
    plan, refused = _consented(candidate, r, now)
    if not plan:
        return _no_consent(candidate, refused)
    if r.preferences.topics.get(candidate.topic) is False and not candidate.critical:
        return _suppress("preferences", "topic_opted_out",
                         f"The customer opted out of topic {candidate.topic!r} and the message is not critical.")
    plan = _ordered(plan, candidate, r.preferences.preferred_channel)
    decision = _support(candidate, r) or _quiet_hours(candidate, r, now) or _caps(candidate, r, now, caps)
    if decision is not None:
        return decision
    plan, template_only = _channel_window(plan, candidate, r, now)
    if not plan:
        return _suppress("channel_window", "no_channel",
                         "WhatsApp is outside its 24-hour window, the trigger has no approved template and no "
                         "other channel is left.")
    return _send(plan, template_only)


def _withdraws(withdrawal: Consent, grant: Consent, channel: str) -> bool:
    """True when ``withdrawal`` cancels ``grant`` for ``channel``: it came later, or at the same instant and is
    at least as specific."""
    return (require_aware(withdrawal.at), withdrawal.channel == channel) >= (
        require_aware(grant.at), grant.channel == channel)


def _consented(candidate: Candidate, r: Recipient, now: datetime) -> tuple[Plan, dict[str, str]]:
    """Channels that may be used, in the candidate's order without repeats, and why the others may not."""
    plan: Plan = {}
    refused: dict[str, str] = {}
    for channel in dict.fromkeys(candidate.channels):
        consent, reason = consent_check(r.consents, candidate.purpose, channel, now)
        if consent is not None and not r.addresses.get(channel):
            reason = "no_channel"
        if reason == "ok":
            plan[channel] = consent
        else:
            refused[channel] = reason
    return plan, refused


def _no_consent(candidate: Candidate, refused: dict[str, str]) -> Decision:
    reason = next((code for code in CONSENT_REASONS if code in refused.values()), "no_consent")
    why = ", ".join(f"{channel}: {code}" for channel, code in refused.items()) or "the trigger names none"
    return _suppress("consent", reason,
                     f"No channel has a valid {candidate.purpose} consent and an address ({why}).")


def _ordered(plan: Plan, candidate: Candidate, preferred: str | None) -> Plan:
    """The candidate's first channel keeps its place; the preferred channel goes ahead of the other ones."""
    first = candidate.channels[0] if candidate.channels else None
    order = sorted(plan, key=lambda c: (c != first, c != preferred))   # stable: the candidate's order otherwise
    return {channel: plan[channel] for channel in order}


def _support(candidate: Candidate, r: Recipient) -> Decision | None:
    if not candidate.is_marketing:
        return None
    if r.open_complaints:
        return _suppress("support", "open_complaint",
                         f"No marketing while the customer has {r.open_complaints} open complaint(s).")
    if r.breached_slas:
        return _suppress("support", "sla_breached",
                         f"No marketing while {r.breached_slas} conversation(s) of the customer breached an SLA.")
    return None


def _quiet_hours(candidate: Candidate, r: Recipient, now: datetime) -> Decision | None:
    qh, zone = r.preferences.quiet_hours, r.preferences.zone
    if candidate.ignore_quiet_hours or not in_quiet_hours(qh, zone, now):
        return None
    release_at = quiet_hours_end(qh, zone, now)
    return Decision("hold", "quiet_hours", "quiet_hours",
                    f"Quiet hours {qh.start:%H:%M}-{qh.end:%H:%M} in {zone.key}; deciding again at "
                    f"{release_at.isoformat()}.", release_at=release_at)


def _caps(candidate: Candidate, r: Recipient, now: datetime, caps: Sequence[CapRule]) -> Decision | None:
    if candidate.transactional:
        return None
    zone = r.preferences.zone
    rule = exceeded(caps, r.past_sends, zone, now)
    if rule is None:
        return None
    count = count_in_window(rule, r.past_sends, zone, now)
    return _suppress("caps", f"frequency_cap:{rule.name}",
                     f"Cap {rule.name!r} allows {rule.max} per {_window_name(rule)} and {count} were sent.")


def _window_name(rule: CapRule) -> str:
    if rule.window == "calendar_week":
        return "calendar week"
    unit = "calendar day" if rule.window == "calendar_day" else "day"
    return f"{rule.days} {unit}s" if rule.days > 1 else unit


def _channel_window(plan: Plan, candidate: Candidate, r: Recipient, now: datetime) -> tuple[Plan, dict[str, bool]]:
    if "whatsapp" not in plan:
        return plan, {}
    last = r.last_inbound.get("whatsapp")
    if last is not None and now - require_aware(last, "last inbound") < WHATSAPP_WINDOW:
        return plan, {"whatsapp": False}
    if candidate.whatsapp_template:
        return plan, {"whatsapp": True}
    return {channel: consent for channel, consent in plan.items() if channel != "whatsapp"}, {}


def _send(plan: Plan, template_only: dict[str, bool]) -> Decision:
    channel, *fallback = plan
    tail = f", then {', '.join(fallback)}" if fallback else ""
    return Decision("send", "send", "ok", f"Send on {channel}{tail}.", channel=channel, fallback=tuple(fallback),
                    consent_id=plan[channel].consent_id,
                    consent_ids={c: consent.consent_id for c, consent in plan.items()},
                    template_only=template_only)


def _suppress(step: str, reason: str, detail: str) -> Decision:
    return Decision("suppress", step, reason, detail)
