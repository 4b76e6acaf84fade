-- Notification state: the customer directory (identifiers -> customer, contact addresses), consent records and
-- their history, preferences, support state (open cases, breached SLAs, last inbound message per channel),
-- notifications with every decision and send attempt, the outbox of notification events and the tracking
-- table of consumed upstream events.
CREATE SCHEMA IF NOT EXISTS notification;

-- From touchpoint.customers.v1 snapshots: which customer an identifier belongs to.
CREATE TABLE notification.directory (
    tenant      text NOT NULL,
    id_type     text NOT NULL,
    id_value    text NOT NULL,
    customer_id text NOT NULL,
    PRIMARY KEY (tenant, id_type, id_value)
);
CREATE INDEX directory_by_customer ON notification.directory (tenant, customer_id);

-- Upstream events whose customer is not known yet; applied when a snapshot names one of the identifiers.
CREATE TABLE notification.unresolved (
    seq        bigserial PRIMARY KEY,
    tenant     text NOT NULL,
    id_type    text NOT NULL,
    id_value   text NOT NULL,
    event      jsonb NOT NULL,          -- the CloudEvent (attributes and data)
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX unresolved_by_identifier ON notification.unresolved (tenant, id_type, id_value);

-- The latest consent record per customer, purpose and channel ("any" = every channel).
CREATE TABLE notification.consents (
    tenant          text NOT NULL,
    customer_id     text NOT NULL,
    purpose         text NOT NULL,
    channel         text NOT NULL,
    consent_id      text NOT NULL,
    status          text NOT NULL,      -- granted | withdrawn
    at              timestamptz NOT NULL,
    expires_at      timestamptz,
    wording_version text,
    source          text,
    PRIMARY KEY (tenant, customer_id, purpose, channel)
);

-- Every consent event as received: what a send relied on stays demonstrable after later changes.
CREATE TABLE notification.consent_log (
    tenant          text NOT NULL,
    consent_id      text NOT NULL,
    customer_id     text NOT NULL,
    status          text NOT NULL,
    purpose         text NOT NULL,
    channel         text NOT NULL,
    at              timestamptz NOT NULL,
    expires_at      timestamptz,
    wording_version text,
    source          text,
    event_id        text NOT NULL,
    PRIMARY KEY (tenant, event_id)
);
CREATE INDEX consent_log_by_id ON notification.consent_log (tenant, consent_id);

CREATE TABLE notification.preferences (
    tenant      text NOT NULL,
    customer_id text NOT NULL,
    data        jsonb NOT NULL,          -- language, time_zone, quiet_hours, preferred_channel, topics, ...
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant, customer_id)
);

CREATE TABLE notification.cases (
    tenant          text NOT NULL,
    case_id         text NOT NULL,
    customer_id     text NOT NULL,
    status          text NOT NULL,       -- open | resolved
    complaint       boolean NOT NULL DEFAULT false,
    channel         text,
    conversation_id text,
    agent_id        text,
    subject         text,
    opened_at       timestamptz,
    updated_at      timestamptz NOT NULL,
    stale_notified_for timestamptz,      -- updated_at the last "still open" status update was sent for
    PRIMARY KEY (tenant, case_id)
);
CREATE INDEX cases_open ON notification.cases (tenant, updated_at) WHERE status = 'open';
CREATE INDEX cases_by_customer ON notification.cases (tenant, customer_id);

-- Conversations whose SLA was breached and that are not resolved yet (from the routing topic).
CREATE TABLE notification.breaches (
    tenant          text NOT NULL,
    conversation_id text NOT NULL,
    customer_id     text NOT NULL,
    at              timestamptz NOT NULL,
    PRIMARY KEY (tenant, conversation_id)
);
CREATE INDEX breaches_by_customer ON notification.breaches (tenant, customer_id);

-- The customer's last inbound message per channel (WhatsApp's 24 h window).
CREATE TABLE notification.last_inbound (
    tenant      text NOT NULL,
    customer_id text NOT NULL,
    channel     text NOT NULL,
    at          timestamptz NOT NULL,
    PRIMARY KEY (tenant, customer_id, channel)
);

CREATE TABLE notification.notifications (
    tenant           text NOT NULL,
    notification_id  uuid NOT NULL,
    customer_id      text NOT NULL,
    trigger          text NOT NULL,
    trigger_instance text NOT NULL,      -- one notification per trigger instance, whatever the redeliveries
    digest_key       text,               -- open digest: later events of the same key join this notification
    purpose          text NOT NULL,
    status           text NOT NULL,      -- scheduled | held | sending | sent | delivered | failed | suppressed
    due_at           timestamptz NOT NULL,
    lease_until      timestamptz,        -- status sending: the instance sending it owns it until then
    payload          jsonb NOT NULL,     -- template values, first channel, case/conversation/agent ids, items
    plan             jsonb,              -- the channels still to try and the consent each relies on
    channel          text,
    attempt          integer NOT NULL DEFAULT 0,
    provider_message_id text,
    consent_id       text,
    language         text,
    sent_at          timestamptz,        -- counts towards frequency caps once set
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant, notification_id),
    UNIQUE (tenant, trigger, trigger_instance)
);
CREATE INDEX notifications_due ON notification.notifications (due_at) WHERE status IN ('scheduled', 'held');
CREATE INDEX notifications_sending ON notification.notifications (lease_until) WHERE status = 'sending';
CREATE INDEX notifications_by_customer ON notification.notifications (tenant, customer_id, created_at);
CREATE INDEX notifications_sent ON notification.notifications (tenant, customer_id, sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX notifications_digest ON notification.notifications (tenant, trigger, digest_key)
    WHERE status = 'scheduled' AND digest_key IS NOT NULL;
CREATE UNIQUE INDEX notifications_provider_id ON notification.notifications (provider_message_id)
    WHERE provider_message_id IS NOT NULL;

-- Every decision taken about a notification, with its reason.
CREATE TABLE notification.decisions (
    seq             bigserial PRIMARY KEY,
    tenant          text NOT NULL,
    notification_id uuid NOT NULL,
    at              timestamptz NOT NULL,
    step            text NOT NULL,
    outcome         text NOT NULL,
    reason          text NOT NULL,
    detail          text NOT NULL,
    channel         text,
    consent_id      text
);
CREATE INDEX decisions_by_notification ON notification.decisions (tenant, notification_id, seq);

-- Send attempts towards providers. The idempotency key is stable per notification and channel: a send whose
-- outcome a crash left unknown is repeated with the same key, and the provider keeps one message.
CREATE TABLE notification.attempts (
    tenant           text NOT NULL,
    notification_id  uuid NOT NULL,
    channel          text NOT NULL,
    idempotency_key  text NOT NULL,
    tries            integer NOT NULL DEFAULT 1,
    state            text NOT NULL,      -- in_doubt | sent | failed
    provider_message_id text,
    error            text,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    PRIMARY KEY (tenant, notification_id, channel)
);

-- Answers to "is your problem solved?": the first answer counts, a reused link is refused.
CREATE TABLE notification.answers (
    tenant          text NOT NULL,
    notification_id uuid NOT NULL,
    solved          boolean NOT NULL,
    answered_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant, notification_id)
);

CREATE TABLE notification.outbox (
    seq        bigserial PRIMARY KEY,
    tenant     text NOT NULL,
    event_id   text NOT NULL,
    event_type text NOT NULL,
    subject    text NOT NULL,
    payload    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    published  boolean NOT NULL DEFAULT false
);
CREATE INDEX outbox_unpublished ON notification.outbox (seq) WHERE NOT published;

CREATE TABLE notification.processed_events (
    tenant   text NOT NULL,
    source   text NOT NULL,
    event_id text NOT NULL,
    PRIMARY KEY (tenant, source, event_id)
);
