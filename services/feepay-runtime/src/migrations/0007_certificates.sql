-- The certificates that sign receipts (layout 2.0.0), registered by the issuer when it
-- loads them: what to declare to the tax authority (serial, issuer, validity), what the
-- lookup service lists, and a record of every certificate ever used. A receipt carries its
-- certificate; verification uses that one and the trust anchors, not this table.
CREATE TABLE signing_certificates (
    fingerprint    TEXT PRIMARY KEY,
    agency_code    TEXT NOT NULL,
    serial         TEXT NOT NULL,
    subject        TEXT NOT NULL,
    issuer         TEXT NOT NULL,
    tax_code       TEXT,
    not_before     TIMESTAMPTZ NOT NULL,
    not_after      TIMESTAMPTZ NOT NULL,
    key_store      TEXT NOT NULL CHECK (key_store IN ('pkcs11', 'pkcs12')),
    certificate    BYTEA NOT NULL,
    registered_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    registered_by  TEXT NOT NULL
);
CREATE INDEX signing_certificates_agency ON signing_certificates (agency_code, not_after);
