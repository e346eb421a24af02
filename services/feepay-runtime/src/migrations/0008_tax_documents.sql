-- Documents for the tax authority, signed by the issuer: the usage report BC26/BLĐT per
-- collector and period, and the notice 04/SS-CTĐT for each cancelled receipt. Never
-- deleted; each is also published on `tax.documents` through the outbox for the centre's
-- T-VAN or tax-portal connector.
CREATE TABLE tax_documents (
    document_id    UUID PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('usage_report', 'error_notice')),
    agency_code    TEXT NOT NULL,
    -- `2026-Q3` or `2026-09` for a usage report.
    period         TEXT,
    -- The cancelled receipt a notice is about.
    receipt_id     UUID,
    document       TEXT NOT NULL,
    document_hash  TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX tax_documents_report ON tax_documents (agency_code, period) WHERE kind = 'usage_report';
CREATE UNIQUE INDEX tax_documents_notice ON tax_documents (receipt_id) WHERE kind = 'error_notice';
CREATE INDEX tax_documents_created ON tax_documents (created_at);
CREATE RULE tax_documents_never_deleted AS ON DELETE TO tax_documents DO INSTEAD NOTHING;
