-- Reference data as loaded: the files themselves (every service parses the newest version
-- with the same validating parser) and normalised tables for queries and reports.
CREATE TABLE reference_versions (
    id             BIGSERIAL PRIMARY KEY,
    loaded_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    loaded_by      TEXT NOT NULL,
    agencies_toml  TEXT NOT NULL,
    fees_toml      TEXT NOT NULL,
    waivers_toml   TEXT NOT NULL,
    digest         TEXT NOT NULL
);

CREATE TABLE agencies (
    code      TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    tax_code  TEXT NOT NULL,
    address   TEXT NOT NULL,
    parent    TEXT REFERENCES agencies (code) DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE series (
    agency    TEXT NOT NULL REFERENCES agencies (code) DEFERRABLE INITIALLY DEFERRED,
    template  TEXT NOT NULL,
    letters   TEXT NOT NULL,
    kinds     TEXT[] NOT NULL,
    title     TEXT NOT NULL,
    PRIMARY KEY (agency, template, letters)
);

CREATE TABLE fees (
    code         TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('phi', 'le_phi')),
    base_amount  BIGINT NOT NULL CHECK (base_amount >= 0),
    authority    TEXT NOT NULL
);

CREATE TABLE waiver_rules (
    id               TEXT PRIMARY KEY,
    document_number  TEXT NOT NULL,
    issuing_body     TEXT NOT NULL,
    valid_from       DATE NOT NULL,
    valid_until      DATE,
    priority         INT NOT NULL,
    definition       JSONB NOT NULL
);

-- Gapless numbering: one row per agency, template, receipt symbol and year. The issuer
-- locks the rows it needs (in key order) for the whole transaction that inserts the
-- receipts, so a rollback also rolls the counter back and no number is ever burnt.
CREATE TABLE series_counters (
    agency       TEXT NOT NULL,
    template     TEXT NOT NULL,
    symbol       TEXT NOT NULL,
    year         INT NOT NULL,
    last_number  INT NOT NULL CHECK (last_number BETWEEN 0 AND 9999999),
    last_hash    TEXT NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (agency, template, symbol, year)
);

-- One row per payment id ever seen: the idempotency record.
CREATE TABLE payments (
    payment_id     TEXT PRIMARY KEY,
    content_hash   TEXT NOT NULL,
    agency_code    TEXT NOT NULL,
    dossier_code   TEXT NOT NULL,
    provider       TEXT NOT NULL,
    total_paid     BIGINT NOT NULL,
    paid_at        TIMESTAMPTZ NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('issued', 'waived', 'rejected')),
    reason         TEXT,
    detail         TEXT,
    waived_lines   JSONB,
    conflicts      INT NOT NULL DEFAULT 0,
    processed_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX payments_agency_day ON payments (agency_code, paid_at);

-- Receipts are never deleted; a cancelled receipt keeps its number.
CREATE TABLE receipts (
    receipt_id      UUID PRIMARY KEY,
    payment_id      TEXT NOT NULL REFERENCES payments (payment_id),
    agency_code     TEXT NOT NULL,
    template        TEXT NOT NULL,
    symbol          TEXT NOT NULL,
    year            INT NOT NULL,
    number          INT NOT NULL CHECK (number BETWEEN 1 AND 9999999),
    total           BIGINT NOT NULL CHECK (total > 0),
    waived          BIGINT NOT NULL DEFAULT 0,
    status          TEXT NOT NULL CHECK (status IN ('issued', 'cancelled')),
    issued_at       TIMESTAMPTZ NOT NULL,
    lookup_code     TEXT NOT NULL UNIQUE,
    key_id          TEXT NOT NULL,
    signature       TEXT NOT NULL,
    previous_hash   TEXT NOT NULL,
    document_hash   TEXT NOT NULL,
    document        TEXT NOT NULL,
    receipt_pb      BYTEA NOT NULL,
    replaces        UUID REFERENCES receipts (receipt_id),
    replaced_by     UUID,
    cancelled_at    TIMESTAMPTZ,
    cancel_reason   TEXT,
    UNIQUE (agency_code, template, symbol, year, number)
);
CREATE INDEX receipts_payment ON receipts (payment_id);
CREATE INDEX receipts_agency_day ON receipts (agency_code, issued_at);

CREATE RULE receipts_never_deleted AS ON DELETE TO receipts DO INSTEAD NOTHING;

CREATE TABLE refunds (
    refund_id     TEXT PRIMARY KEY,
    payment_id    TEXT NOT NULL,
    content_hash  TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'applied', 'rejected')),
    detail        TEXT,
    refund_pb     BYTEA NOT NULL,
    received_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_at    TIMESTAMPTZ
);
CREATE INDEX refunds_pending ON refunds (payment_id) WHERE status = 'pending';

-- Transactional outbox: events written with the state change, relayed at least once.
CREATE TABLE outbox (
    id            BIGSERIAL PRIMARY KEY,
    producer      TEXT NOT NULL,
    topic         TEXT NOT NULL,
    key           TEXT NOT NULL,
    ce_id         TEXT NOT NULL,
    ce_type       TEXT NOT NULL,
    ce_source     TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    payload       BYTEA NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX outbox_producer ON outbox (producer, id);

-- Who did what, when and why.
CREATE TABLE audit_log (
    id       BIGSERIAL PRIMARY KEY,
    at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    reason   TEXT,
    details  JSONB
);
