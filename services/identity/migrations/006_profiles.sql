-- Fuzzy matching of profiles: each profile identity received (normalised attributes, as compared), its
-- blocking keys (profiles are compared only when they share one), and the evidence of fuzzy merges and reviews.
CREATE TABLE identity.profiles (
    tenant      text NOT NULL,
    source      text NOT NULL,
    event_id    text NOT NULL,
    customer_id text NOT NULL,          -- the customer the profile resolved to; current one via customers
    attrs       jsonb NOT NULL,
    occurred_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, source, event_id)
);
CREATE INDEX profiles_customer ON identity.profiles (tenant, customer_id);

CREATE TABLE identity.profile_blocks (
    tenant   text NOT NULL,
    block    text NOT NULL,
    source   text NOT NULL,
    event_id text NOT NULL,
    PRIMARY KEY (tenant, block, source, event_id)
);

ALTER TABLE identity.merges ADD COLUMN evidence jsonb;
ALTER TABLE identity.reviews ADD COLUMN rule text NOT NULL DEFAULT 'review_types';
ALTER TABLE identity.reviews ADD COLUMN evidence jsonb;
