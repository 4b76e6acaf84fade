-- Feedback state: the customer directory, survey invitations, responses with their attribution, product
-- ratings, detractor follow-up loops, the outbox of feedback events and the tracking table of consumed events.
CREATE SCHEMA IF NOT EXISTS feedback;

CREATE TABLE feedback.directory (
    tenant      text NOT NULL,
    id_type     text NOT NULL,
    id_value    text NOT NULL,
    customer_id text NOT NULL,
    PRIMARY KEY (tenant, id_type, id_value)
);
CREATE INDEX directory_by_customer ON feedback.directory (tenant, customer_id);

CREATE TABLE feedback.unresolved (
    seq         bigserial PRIMARY KEY,
    tenant      text NOT NULL,
    id_type     text NOT NULL,
    id_value    text NOT NULL,
    event       jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX unresolved_by_identifier ON feedback.unresolved (tenant, id_type, id_value);

-- One invitation per trigger instance. Attribution (conversation, case, agent, team, channel, product) is copied
-- from the triggering event, so a response is tied to it whatever happens later.
CREATE TABLE feedback.invitations (
    tenant           text NOT NULL,
    invitation_id    uuid NOT NULL,
    customer_id      text NOT NULL,
    survey_id        text NOT NULL,
    survey_version   integer NOT NULL,
    trigger          text NOT NULL,
    trigger_instance text NOT NULL,
    conversation_key text,              -- conversation or case the survey is about (no duplicate invitation)
    conversation_id  text,
    case_id          text,
    agent_id         text,
    team             text,
    channel          text,
    product          text,
    language         text,
    status           text NOT NULL,     -- scheduled | invited | suppressed | responded
    reason           text,              -- suppressed: why
    due_at           timestamptz NOT NULL,
    invited_at       timestamptz,
    expires_at       timestamptz,
    resurvey_of      text,              -- the response whose follow-up this re-survey measures
    created_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant, invitation_id),
    UNIQUE (tenant, trigger, trigger_instance)
);
CREATE INDEX invitations_due ON feedback.invitations (due_at) WHERE status = 'scheduled';
CREATE INDEX invitations_by_customer ON feedback.invitations (tenant, customer_id, created_at);

CREATE TABLE feedback.responses (
    tenant          text NOT NULL,
    response_id     text NOT NULL,      -- the invitation id (link) or the upstream response id
    invitation_id   uuid,
    customer_id     text NOT NULL,
    survey_id       text NOT NULL,
    source          text NOT NULL,      -- link | upstream
    submitted_at    timestamptz NOT NULL,
    metric          text,               -- nps | csat | ces (the survey's primary question)
    score           integer,
    answers         jsonb NOT NULL,
    channel         text,
    conversation_id text,
    case_id         text,
    agent_id        text,
    team            text,
    product         text,
    PRIMARY KEY (tenant, response_id)
);
CREATE INDEX responses_metric ON feedback.responses (tenant, metric, submitted_at);

CREATE TABLE feedback.product_ratings (
    tenant      text NOT NULL,
    rating_id   text NOT NULL,
    product_id  text NOT NULL,
    rating      integer NOT NULL,
    customer_id text,
    occurred_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, rating_id)
);
CREATE INDEX product_ratings_by_product ON feedback.product_ratings (tenant, product_id);

-- A product below the threshold is alerted once, and again only after it went back above it.
CREATE TABLE feedback.product_alerts (
    tenant     text NOT NULL,
    product_id text NOT NULL,
    below      boolean NOT NULL,
    average    double precision NOT NULL,
    at         timestamptz NOT NULL,
    PRIMARY KEY (tenant, product_id)
);

-- Detractor follow-ups: opened with the detractor event, closed when routing resolves the follow-up.
CREATE TABLE feedback.loops (
    tenant                    text NOT NULL,
    response_id               text NOT NULL,
    follow_up_conversation_id text NOT NULL,
    customer_id               text NOT NULL,
    survey_id                 text NOT NULL,
    team                      text,
    opened_at                 timestamptz NOT NULL,
    due_at                    timestamptz NOT NULL,
    closed_at                 timestamptz,
    PRIMARY KEY (tenant, response_id),
    UNIQUE (tenant, follow_up_conversation_id)
);

CREATE TABLE feedback.outbox (
    seq        bigserial PRIMARY KEY,
    tenant     text NOT NULL,
    event_id   text NOT NULL,
    event_type text NOT NULL,
    subject    text NOT NULL,
    payload    text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    published  boolean NOT NULL DEFAULT false
);
CREATE INDEX outbox_unpublished ON feedback.outbox (seq) WHERE NOT published;

CREATE TABLE feedback.processed_events (
    tenant   text NOT NULL,
    source   text NOT NULL,
    event_id text NOT NULL,
    PRIMARY KEY (tenant, source, event_id)
);

-- Agents' teams (from touchpoint.agents.v1), to attribute responses to a team.
CREATE TABLE feedback.agents (
    tenant   text NOT NULL,
    agent_id text NOT NULL,
    team     text,
    PRIMARY KEY (tenant, agent_id)
);
