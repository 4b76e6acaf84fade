-- What the identity rules refused: identifiers of an event that were not linked (blocked value, a limit or a
-- cap), kept for the explanation of a customer's graph.
CREATE TABLE identity.refusals (
    tenant      text NOT NULL,
    source      text NOT NULL,
    event_id    text NOT NULL,
    id_type     text NOT NULL,
    value       text NOT NULL,
    rule        text NOT NULL,
    customer_id text NOT NULL,
    refused_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, source, event_id, id_type, value)
);
CREATE INDEX refusals_by_customer ON identity.refusals (tenant, customer_id);

-- Merges held for a person to decide (linked only by identifiers of the rules' review types). The id derives
-- from the set of customers, so a rejected merge is not proposed again.
CREATE TABLE identity.reviews (
    tenant         text NOT NULL,
    review_id      text NOT NULL,
    customers      text[] NOT NULL,
    linking        jsonb NOT NULL,
    trigger_source text NOT NULL,
    trigger_event  text NOT NULL,
    status         text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    decided_at     timestamptz,
    decided_by     text,
    merge_id       text,
    PRIMARY KEY (tenant, review_id)
);
CREATE INDEX reviews_pending ON identity.reviews (tenant, created_at) WHERE status = 'pending';
