-- Channel connectors (docs/connectors.md).

-- Raw provider payloads kept for audit: one row per distinct verified body, capped in size (the cap is
-- TOUCHPOINT_RAW_PAYLOAD_MAX_BYTES; size_bytes is the original size, truncated says whether body was cut).
-- They hold personal data: delete rows older than your audit retention period.
CREATE TABLE ingestion.raw_payloads (
    tenant        text NOT NULL,
    connector     text NOT NULL,
    sha256        text NOT NULL,
    received_at   timestamptz NOT NULL DEFAULT now(),
    content_type  text NOT NULL,
    size_bytes    integer NOT NULL,
    truncated     boolean NOT NULL,
    body          bytea NOT NULL,
    event_ids     text[] NOT NULL,
    PRIMARY KEY (tenant, connector, sha256)
);
CREATE INDEX raw_payloads_received_at ON ingestion.raw_payloads (received_at);

-- Email threading: every Message-ID seen, with the conversation it joined.
CREATE TABLE ingestion.email_messages (
    tenant           text NOT NULL,
    message_id       text NOT NULL,
    conversation_id  text NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, message_id)
);

-- Web chat conversations (the token only as its SHA-256 hash) and the agent replies streamed to the widget.
CREATE TABLE ingestion.webchat_conversations (
    conversation_id  uuid PRIMARY KEY,
    tenant           text NOT NULL,
    site_key         text NOT NULL,
    visitor_id       text NOT NULL,
    email            text,
    token_hash       text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ingestion.webchat_replies (
    seq              bigserial PRIMARY KEY,
    conversation_id  uuid NOT NULL REFERENCES ingestion.webchat_conversations,
    reply_id         text NOT NULL,
    text             text NOT NULL,
    agent_id         text,
    sent_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (conversation_id, reply_id)
);
