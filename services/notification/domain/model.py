"""What the notification decision pipeline works on, as plain values.

A :class:`Candidate` is one message a trigger wants to send; a :class:`Recipient` is everything known about the
customer it is for, loaded in one go; :func:`services.notification.domain.pipeline.decide` turns the two into a
:class:`Decision`. Times are timezone-aware datetimes, stored in UTC; local wall-clock values (quiet hours) are
naive :class:`~datetime.time` read in the recipient's zone. Construction checks the few invariants the pipeline
relies on and raises ValueError, so a value that exists is usable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

CHANNELS = ("email", "sms", "whatsapp", "webhook")
PURPOSES = ("service", "marketing", "surveys")
ANY_CHANNEL = "any"                      # a consent record naming "any" covers every channel of CHANNELS
CONSENT_STATUSES = ("granted", "withdrawn")
CAP_WINDOWS = ("calendar_day", "calendar_week", "rolling")
MAX_WINDOW_DAYS = 30                     # past sends are loaded for 31 days, so no window may look further back
OUTCOMES = ("send", "hold", "suppress")
UTC = timezone.utc


def require_aware(value: datetime, name: str = "datetime") -> datetime:
    """``value`` in UTC; ValueError when it is naive, because a naive instant means nothing across zones."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class Consent:
    """One upstream consent record for a (purpose, channel); sends link to ``consent_id``."""

    consent_id: str
    purpose: str             # service | marketing | surveys
    channel: str             # email | sms | whatsapp | webhook | any
    status: str              # "granted" | "withdrawn"
    at: datetime             # when granted/withdrawn
    expires_at: datetime | None = None
    wording_version: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.status not in CONSENT_STATUSES:
            raise ValueError(f"consent status must be one of {', '.join(CONSENT_STATUSES)}, got {self.status!r}")
        require_aware(self.at, "consent at")
        if self.expires_at is not None:
            require_aware(self.expires_at, "consent expires_at")

    @property
    def granted(self) -> bool:
        return self.status == "granted"

    def covers(self, purpose: str, channel: str) -> bool:
        """True when this record speaks about ``channel`` for ``purpose``, directly or through "any"."""
        return self.purpose == purpose and self.channel in (channel, ANY_CHANNEL)


@dataclass(frozen=True)
class QuietHours:
    """A daily local window in which nothing but ``ignore_quiet_hours`` messages go out."""

    start: time              # local wall-clock, e.g. 22:00
    end: time                # e.g. 07:00 (window may cross midnight); start == end means no quiet hours

    def __post_init__(self) -> None:
        if not all(isinstance(t, time) and t.tzinfo is None for t in (self.start, self.end)):
            raise ValueError(f"quiet hours are naive local times, got {self.start!r} - {self.end!r}")

    @property
    def empty(self) -> bool:
        return self.start == self.end


@dataclass
class Preferences:
    language: str | None = None            # "de", "en"
    time_zone: str = "UTC"                 # IANA name
    quiet_hours: QuietHours | None = None
    preferred_channel: str | None = None
    topics: dict[str, bool] = field(default_factory=dict)   # topic -> opted in (missing = opted in)
    display_name: str | None = None

    @property
    def zone(self) -> ZoneInfo:
        """The recipient's zone; UTC when the local time zone database does not know the name, because an
        unknown zone must not keep service messages from going out (the contract validates names on the way
        in, so this only happens when the database lacks a zone another host knew)."""
        try:
            return ZoneInfo(self.time_zone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            return ZoneInfo("UTC")


@dataclass(frozen=True)
class PastSend:
    at: datetime
    trigger: str
    transactional: bool


@dataclass
class Recipient:
    """Everything the decision pipeline needs to know about one customer, loaded in one go."""

    customer_id: str
    consents: list[Consent]                 # latest record per (purpose, channel)
    preferences: Preferences
    addresses: dict[str, str]               # channel -> address (email addr, E.164 phone for sms/whatsapp, url)
    open_complaints: int = 0                # open cases flagged as complaints
    breached_slas: int = 0                  # conversations with a breached SLA not yet resolved
    last_inbound: dict[str, datetime] = field(default_factory=dict)  # channel -> customer's last inbound message
    past_sends: list[PastSend] = field(default_factory=list)         # sends of the last 31 days


@dataclass(frozen=True)
class CapRule:
    """At most ``max`` non-transactional sends per window; see :mod:`.caps` for how windows are measured."""

    name: str
    max: int
    window: str          # "calendar_day" (recipient's zone) | "calendar_week" | "rolling"
    days: int = 1        # for rolling: window length in days (<= 30); for calendar_day: number of calendar days

    def __post_init__(self) -> None:
        if self.window not in CAP_WINDOWS:
            raise ValueError(f"cap {self.name!r}: window must be one of {', '.join(CAP_WINDOWS)}, got {self.window!r}")
        if not 1 <= self.days <= MAX_WINDOW_DAYS:
            raise ValueError(f"cap {self.name!r}: days must be 1 to {MAX_WINDOW_DAYS}, got {self.days!r}")
        if self.max < 0:
            raise ValueError(f"cap {self.name!r}: max must not be negative, got {self.max!r}")


@dataclass(frozen=True)
class Candidate:
    """One message about to be decided: what the trigger wants to send."""

    trigger: str                 # trigger name from config, e.g. "case_follow_up"
    purpose: str                 # service | marketing | surveys
    topic: str                   # preference topic, e.g. "case_updates", "shipping", "offers"
    channels: tuple[str, ...]    # in preference order; "the channel the case came in on" (if any) first
    critical: bool = False       # cannot be turned off by topic preferences
    transactional: bool = False  # exempt from frequency caps
    marketing: bool = False      # suppressed while complaint open / SLA breached (purpose marketing implies it)
    whatsapp_template: str | None = None   # approved template name, allowed outside the 24 h window
    ignore_quiet_hours: bool = False

    @property
    def is_marketing(self) -> bool:
        return self.marketing or self.purpose == "marketing"


@dataclass(frozen=True)
class Decision:
    """The pipeline's answer. ``send`` carries the channel plan, ``hold`` a ``release_at`` at which to decide
    again, ``suppress`` only the step and reason."""

    outcome: str                 # "send" | "hold" | "suppress"
    step: str                    # pipeline step that decided: consent | preferences | support | quiet_hours |
                                 # caps | channel_window | send
    reason: str                  # machine code: no_consent, consent_withdrawn, consent_expired, topic_opted_out,
                                 # open_complaint, sla_breached, quiet_hours, frequency_cap:<rule>, no_channel,
                                 # ok
    detail: str                  # one human sentence
    channel: str | None = None   # first channel to try (outcome send)
    fallback: tuple[str, ...] = ()          # next channels to try on failure, each consented and addressable
    consent_id: str | None = None           # consent record the first channel relies on
    consent_ids: dict[str, str] = field(default_factory=dict)  # channel -> consent id for every channel in plan
    release_at: datetime | None = None      # outcome hold: when to re-decide
    template_only: dict[str, bool] = field(default_factory=dict)  # whatsapp -> True when outside 24 h window

    @property
    def plan(self) -> tuple[str, ...]:
        """Every channel to try, in order: ``channel`` then ``fallback``; empty unless the outcome is send."""
        return (self.channel, *self.fallback) if self.channel is not None else ()
