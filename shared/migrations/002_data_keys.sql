-- Data keys for sealed personal fields (shared/vault.py). Deleting a key erases every copy of what it sealed.
-- subject: SHA-256 of tenant and the identifier the key belongs to; kid: random, the name sealed events carry.
CREATE TABLE platform.data_keys (
    tenant      text NOT NULL,
    kid         text NOT NULL,
    subject     text NOT NULL,
    key         bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, kid),
    UNIQUE (tenant, subject)
);

-- Which customers events sealed under a key were attributed to (written by identity, read by erasure).
CREATE TABLE platform.key_owners (
    tenant      text NOT NULL,
    customer_id text NOT NULL,
    kid         text NOT NULL,
    PRIMARY KEY (tenant, customer_id, kid)
);

-- Ids of deleted keys: their events are skipped as erased, while a key id never made is an error.
CREATE TABLE platform.shredded_keys (
    tenant      text NOT NULL,
    kid         text NOT NULL,
    shredded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, kid)
);
