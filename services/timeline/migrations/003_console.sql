-- What the agent console shows beside the timeline: consent and preferences from touchpoint.consent.v1, kept
-- per subject ("id:<customer id>" when the event named the customer, else each "type:value" identifier it
-- carried), so that a reader finds them through the customer's id, merged ids and identifiers.
CREATE TABLE timeline.consents (
    tenant          text NOT NULL,
    subject         text NOT NULL,
    purpose         text NOT NULL,
    channel         text NOT NULL,
    granted         boolean NOT NULL,
    consent_id      text NOT NULL,
    wording_version text,
    source          text NOT NULL,
    occurred_at     timestamptz NOT NULL,
    expires_at      timestamptz,
    PRIMARY KEY (tenant, subject, purpose, channel)
);

-- Preferences per subject: ``fields`` maps a preference to {"value": ..., "at": <instant of the event that set
-- it>}, so that events applied out of order keep the newest value of each field.
CREATE TABLE timeline.preferences (
    tenant       text NOT NULL,
    subject      text NOT NULL,
    fields       jsonb NOT NULL,
    display_name text,
    PRIMARY KEY (tenant, subject)
);
CREATE INDEX preferences_by_name ON timeline.preferences (tenant, lower(display_name) text_pattern_ops)
    WHERE display_name IS NOT NULL;

-- Search by an identifier's value whatever its type (the console's search box).
CREATE INDEX identifiers_by_value ON timeline.identifiers (tenant, value);
