-- Tenants and API keys, used by every HTTP surface. Keys are stored as SHA-256 hashes of their secret part.
CREATE SCHEMA IF NOT EXISTS platform;

CREATE TABLE platform.tenants (
    tenant      text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE platform.api_keys (
    key_id      text PRIMARY KEY,
    tenant      text NOT NULL REFERENCES platform.tenants (tenant),
    secret_hash text NOT NULL,
    scopes      text[] NOT NULL,
    label       text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON platform.api_keys (tenant);
