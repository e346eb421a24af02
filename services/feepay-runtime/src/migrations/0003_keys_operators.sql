-- Public signing keys, registered by every process that signs (the issuer at start, the
-- operator tool when it cancels or replaces). Verifiers (the lookup service, audits) read
-- them here; the secret halves never leave the key files. A key id is never reused.
CREATE TABLE signing_keys (
    key_id         TEXT PRIMARY KEY,
    agency_code    TEXT NOT NULL,
    algorithm      TEXT NOT NULL DEFAULT 'Ed25519',
    public_key     TEXT NOT NULL,
    registered_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    registered_by  TEXT NOT NULL
);

-- Operators of the command-line tool. A token is shown once at creation; only its SHA-256
-- is kept. scope is an agency code (the operator sees and acts on its subtree) or '*'.
CREATE TABLE operators (
    name        TEXT PRIMARY KEY,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'auditor')),
    scope       TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_by  TEXT NOT NULL,
    revoked_at  TIMESTAMPTZ
);

-- Dead letters replayed by an operator, so the same one is not replayed twice by accident.
CREATE TABLE dead_letter_replays (
    dlq_topic    TEXT NOT NULL,
    partition    INT NOT NULL,
    "offset"     BIGINT NOT NULL,
    replayed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    replayed_by  TEXT NOT NULL,
    target_topic TEXT NOT NULL,
    edited       BOOLEAN NOT NULL,
    PRIMARY KEY (dlq_topic, partition, "offset")
);
