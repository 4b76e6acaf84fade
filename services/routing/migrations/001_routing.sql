-- Routing state: agents, conversations with their queue/offer/assignment and SLA clocks, durable timers, an
-- outbox of routing events and the tracking table of consumed upstream events.
CREATE SCHEMA IF NOT EXISTS routing;

CREATE TABLE routing.agents (
    tenant           text NOT NULL,
    agent_id         text NOT NULL,
    name             text,
    attributes       jsonb NOT NULL DEFAULT '{}'::jsonb,   -- skills {name: level}, languages, teams, extra
    capacity_total   integer NOT NULL DEFAULT 100,
    presence         text NOT NULL DEFAULT 'offline',
    presence_at      timestamptz,
    last_assigned_at timestamptz,
    PRIMARY KEY (tenant, agent_id)
);

CREATE TABLE routing.conversations (
    tenant          text NOT NULL,
    conversation_id text NOT NULL,
    customer_id     text NOT NULL,
    channel         text NOT NULL,
    status          text NOT NULL,          -- queued | offered | assigned | waiting | resolved
    state           jsonb NOT NULL,         -- the rest of the conversation (see domain.model.Conversation)
    queued_at       timestamptz,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant, conversation_id)
);
CREATE INDEX conversations_open ON routing.conversations (tenant, status) WHERE status <> 'resolved';
CREATE INDEX conversations_by_customer ON routing.conversations (tenant, customer_id);

-- Who last handled a customer: continuity routing prefers that agent.
CREATE TABLE routing.last_agents (
    tenant      text NOT NULL,
    customer_id text NOT NULL,
    agent_id    text NOT NULL,
    at          timestamptz NOT NULL,
    PRIMARY KEY (tenant, customer_id)
);

-- Assignments, for live handling rates (queue ETA) and reports.
CREATE TABLE routing.assignments (
    tenant          text NOT NULL,
    conversation_id text NOT NULL,
    queue           text NOT NULL,
    agent_id        text NOT NULL,
    queued_at       timestamptz NOT NULL,
    assigned_at     timestamptz NOT NULL,
    released_at     timestamptz
);
CREATE INDEX assignments_recent ON routing.assignments (tenant, queue, assigned_at);
CREATE INDEX assignments_open ON routing.assignments (tenant, conversation_id) WHERE released_at IS NULL;

-- Durable timers: fire once (fired_at set in the transaction that applies their effect).
CREATE TABLE routing.timers (
    tenant          text NOT NULL,
    timer_id        text NOT NULL,
    conversation_id text NOT NULL,
    kind            text NOT NULL,
    due_at          timestamptz NOT NULL,
    payload         jsonb NOT NULL DEFAULT '{}'::jsonb,
    fired_at        timestamptz,
    PRIMARY KEY (tenant, timer_id)
);
CREATE INDEX timers_due ON routing.timers (due_at) WHERE fired_at IS NULL;

CREATE TABLE routing.outbox (
    seq        bigserial PRIMARY KEY,
    tenant     text NOT NULL,
    event_id   text NOT NULL,
    event_type text NOT NULL,
    subject    text NOT NULL,
    payload    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    published  boolean NOT NULL DEFAULT false
);
CREATE INDEX outbox_unpublished ON routing.outbox (seq) WHERE NOT published;

CREATE TABLE routing.processed_events (
    tenant   text NOT NULL,
    source   text NOT NULL,
    event_id text NOT NULL,
    PRIMARY KEY (tenant, source, event_id)
);
