"""The topic registry: every topic, its key, the event types on it, its one producer and its consumers.

Public topics have fixed names that outside systems rely on; internal topics are Touchpoint's own.
Every topic has a dead-letter twin named ``<topic>.dlq``. Services never create topics: the
``touchpoint topics create`` command provisions them from this registry.
"""

from dataclasses import dataclass, field

from shared.contracts import types as t


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    key: str
    event_types: tuple[str, ...]
    producer: str
    consumers: tuple[str, ...]
    public: bool = False
    compacted: bool = False
    config: dict[str, str] = field(default_factory=dict)

    def qualified(self, prefix: str = "") -> str:
        return prefix + self.name

    def dead_letter(self, prefix: str = "") -> str:
        return prefix + self.name + ".dlq"


INBOUND = TopicSpec(
    name="touchpoint.inbound.v1",
    partitions=6,
    key="any (upstream's choice); ingestion's HTTP gateway uses source/id",
    event_types=(t.INTERACTION_OCCURRED, t.PROFILE_UPDATED),
    producer="upstream",  # upstream systems, directly or through ingestion's HTTP gateway
    consumers=("ingestion",),
    public=True,
)
INGESTED = TopicSpec(
    name="touchpoint.ingestion.interactions.v1",
    partitions=6,
    key="tenant/identifier type:value of the highest-priority identifier",
    event_types=(t.INTERACTION_INGESTED, t.PROFILE_INGESTED),
    producer="ingestion",
    consumers=("identity",),
)
IDENTITY = TopicSpec(
    name="touchpoint.identity.v1",
    partitions=6,
    key="customer id",
    event_types=(t.INTERACTION_RESOLVED, t.CUSTOMERS_MERGED, t.CUSTOMER_SPLIT, t.CUSTOMER_ERASED),
    producer="identity",
    consumers=("timeline", "routing", "notification", "feedback"),
)
TIMELINE = TopicSpec(
    name="touchpoint.timeline.v1",
    partitions=6,
    key="customer id",
    event_types=(t.TIMELINE_ENTRY_ADDED,),
    producer="timeline",
    consumers=("downstream",),
    public=True,
)
CUSTOMERS = TopicSpec(
    name="touchpoint.customers.v1",
    partitions=6,
    key="customer id (tombstone when the id stops existing)",
    event_types=(t.CUSTOMER_SNAPSHOT,),
    producer="timeline",
    consumers=("notification", "feedback", "downstream"),
    public=True,
    compacted=True,
    config={"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1", "segment.ms": "600000"},
)

AGENTS = TopicSpec(
    name="touchpoint.agents.v1",
    partitions=6,
    key="agent id",
    event_types=(t.AGENT_PROFILE_UPDATED, t.AGENT_PRESENCE_CHANGED),
    producer="upstream",  # workforce management or the contact-centre platform
    consumers=("routing", "feedback"),
    public=True,
)
CONVERSATIONS = TopicSpec(
    name="touchpoint.conversations.v1",
    partitions=6,
    key="conversation id",
    event_types=(t.CONVERSATION_AGENT_REPLIED, t.CONVERSATION_CUSTOMER_REPLIED, t.CONVERSATION_WAITING_ON_CUSTOMER,
                 t.CONVERSATION_RESOLVED, t.CONVERSATION_REOPENED),
    producer="upstream",  # the helpdesk or messaging platform the agents work in
    consumers=("routing",),
    public=True,
)
ROUTING = TopicSpec(
    name="touchpoint.routing.v1",
    partitions=6,
    key="customer id",
    event_types=(t.ROUTING_CONVERSATION_QUEUED, t.ROUTING_CONVERSATION_OFFERED, t.ROUTING_CONVERSATION_ASSIGNED,
                 t.ROUTING_CONVERSATION_REASSIGNED, t.ROUTING_QUEUE_POSITION_CHANGED, t.ROUTING_SLA_WARNING,
                 t.ROUTING_SLA_BREACHED, t.ROUTING_CONVERSATION_RESOLVED),
    producer="routing",
    consumers=("timeline", "notification", "feedback", "downstream"),
    public=True,
)

BUSINESS = TopicSpec(
    name="touchpoint.business.v1",
    partitions=6,
    key="case id / order id (shipments: their order id)",
    event_types=(t.CASE_OPENED, t.CASE_UPDATED, t.CASE_RESOLVED, t.CASE_REOPENED, t.ORDER_PLACED,
                 t.SHIPMENT_DISPATCHED, t.SHIPMENT_DELAYED, t.SHIPMENT_DELIVERED),
    producer="upstream",  # the helpdesk, the shop and the carriers' integrations
    consumers=("notification", "feedback"),
    public=True,
)
PRIVACY = TopicSpec(
    name="touchpoint.privacy.v1",
    partitions=6,
    key="customer id, or the request id when the request names identifiers",
    event_types=(t.ERASURE_REQUESTED,),
    producer="upstream",  # a privacy portal or the CRM's data-subject request workflow
    consumers=("identity",),
    public=True,
)
CONSENT = TopicSpec(
    name="touchpoint.consent.v1",
    partitions=6,
    key="customer id, or the first identifier when the id is unknown",
    event_types=(t.CONSENT_GRANTED, t.CONSENT_WITHDRAWN, t.PREFERENCES_CHANGED),
    producer="upstream",  # the CRM or preference centre
    consumers=("notification", "timeline"),
    public=True,
)
NOTIFICATIONS = TopicSpec(
    name="touchpoint.notification.v1",
    partitions=6,
    key="customer id",
    event_types=(t.NOTIFICATION_SCHEDULED, t.NOTIFICATION_HELD, t.NOTIFICATION_SENT, t.NOTIFICATION_DELIVERED,
                 t.NOTIFICATION_FAILED, t.NOTIFICATION_SUPPRESSED, t.NOTIFICATION_FOLLOW_UP_ANSWERED),
    producer="notification",
    consumers=("timeline", "routing", "downstream"),
    public=True,
)

FEEDBACK_INBOUND = TopicSpec(
    name="touchpoint.feedback-inbound.v1",
    partitions=6,
    key="response id / product id",
    event_types=(t.FEEDBACK_RESPONSE_SUBMITTED, t.PRODUCT_RATED),
    producer="upstream",  # survey tools, the shop's review system
    consumers=("feedback",),
    public=True,
)
FEEDBACK = TopicSpec(
    name="touchpoint.feedback.v1",
    partitions=6,
    key="customer id (product alerts: product id)",
    event_types=(t.FEEDBACK_INVITED, t.FEEDBACK_SUPPRESSED, t.FEEDBACK_RESPONDED, t.FEEDBACK_DETRACTOR_DETECTED,
                 t.FEEDBACK_LOOP_CLOSED, t.FEEDBACK_PRODUCT_ALERT),
    producer="feedback",
    consumers=("timeline", "notification", "routing", "downstream"),
    public=True,
)

REGISTRY: tuple[TopicSpec, ...] = (INBOUND, INGESTED, IDENTITY, TIMELINE, CUSTOMERS, AGENTS, CONVERSATIONS, ROUTING,
                                   BUSINESS, CONSENT, NOTIFICATIONS, FEEDBACK_INBOUND, FEEDBACK, PRIVACY)


def by_name(name: str) -> TopicSpec:
    for spec in REGISTRY:
        if spec.name == name:
            return spec
    raise KeyError(name)
