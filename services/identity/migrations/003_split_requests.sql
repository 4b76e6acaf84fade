-- Splits requested by agents (e.g. from the agent console) for an administrator to review and carry out.
CREATE TABLE identity.split_requests (
    tenant       text NOT NULL,
    request_id   text NOT NULL,
    customer_id  text NOT NULL,
    identifiers  jsonb NOT NULL,
    reason       text NOT NULL,
    requested_by text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, request_id)
);
CREATE INDEX split_requests_by_time ON identity.split_requests (tenant, requested_at);
