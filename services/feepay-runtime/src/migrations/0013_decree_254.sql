-- Receipts under Decree 254/2026/NĐ-CP and Circular 91/2026/TT-BTC, in force since 1 July
-- 2026 (they end Decree 123/2020, Decree 70/2025 and Circular 32/2025).

-- Numbers of at most 8 digits (Decree 254 Art. 23.2.c); each series' numbers may be split
-- into the ranges of delegates (Art. 25.2, 25.5), each numbered and chained on its own
-- counter, identified by its first number.
ALTER TABLE series_counters DROP CONSTRAINT series_counters_last_number_check;
ALTER TABLE series_counters ADD CONSTRAINT series_counters_last_number_check CHECK (last_number BETWEEN 0 AND 99999999);
ALTER TABLE series_counters ADD COLUMN range_from INT NOT NULL DEFAULT 1 CHECK (range_from BETWEEN 1 AND 99999999);
ALTER TABLE series_counters DROP CONSTRAINT series_counters_pkey;
ALTER TABLE series_counters ADD PRIMARY KEY (agency, template, symbol, year, range_from);

ALTER TABLE receipts DROP CONSTRAINT receipts_number_check;
ALTER TABLE receipts ADD CONSTRAINT receipts_number_check CHECK (number BETWEEN 1 AND 99999999);
ALTER TABLE receipts ADD COLUMN range_from INT NOT NULL DEFAULT 1;
-- The delegate that issued the receipt (it signs and transmits), NULL when the collector did.
ALTER TABLE receipts ADD COLUMN delegate_code TEXT;
-- Nothing issued from 1 July 2026 is cancelled: an error is notified or the receipt is
-- replaced (Circular 91 Art. 20). `cancelled` stays for the receipts cancelled before.
ALTER TABLE receipts DROP CONSTRAINT receipts_status_check;
ALTER TABLE receipts ADD CONSTRAINT receipts_status_check CHECK (status IN ('issued', 'cancelled', 'replaced'));
ALTER TABLE receipts ADD COLUMN replaced_at TIMESTAMPTZ;
-- How the receipt reaches the tax authority, fixed by the form version it was issued under:
-- in the usage report of its period (before 1 July 2026), or in the summary 01/TH-BLĐT of
-- its day, whose document is recorded here in the transaction that signs it.
ALTER TABLE receipts ADD COLUMN transmission TEXT NOT NULL DEFAULT 'usage_report'
    CHECK (transmission IN ('usage_report', 'daily_summary'));
ALTER TABLE receipts ADD COLUMN summary_id UUID;
-- Receipts already issued from 1 July 2026 (00:00 in Vietnam) were due on that day's
-- summary: they go out late, with the explanation the form's column 12 gives for it.
UPDATE receipts SET transmission = 'daily_summary' WHERE issued_at >= TIMESTAMPTZ '2026-07-01 00:00:00+07';
CREATE INDEX receipts_unsummarized ON receipts (issued_at) WHERE transmission = 'daily_summary' AND summary_id IS NULL;

-- Errors notified without reissue (Circular 91 Art. 20.1): the receipt stands; the notice
-- says what was wrong and what is right, and its 04/SS-CTĐT is in tax_documents.
CREATE TABLE receipt_notices (
    notice_id    UUID PRIMARY KEY,
    receipt_id   UUID NOT NULL REFERENCES receipts (receipt_id),
    reason       TEXT NOT NULL,
    -- What the content should read (payer fields), as the payer is told.
    corrections  JSONB NOT NULL,
    request_id   BIGINT,
    notified_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX receipt_notices_receipt ON receipt_notices (receipt_id);
CREATE RULE receipt_notices_never_deleted AS ON DELETE TO receipt_notices DO INSTEAD NOTHING;

-- A refund of a fee rightly collected leaves its receipts as they are (no cancellation
-- exists, Circular 91 Art. 20 governs errors only): the refund records what it gives back
-- on which receipt.
ALTER TABLE refunds ADD COLUMN allocation JSONB;

-- The daily summaries 01/TH-BLĐT: several documents per sender and day (a busy day is
-- split, later receipts are supplements), numbered from 1.
ALTER TABLE tax_documents DROP CONSTRAINT tax_documents_kind_check;
ALTER TABLE tax_documents ADD CONSTRAINT tax_documents_kind_check CHECK (kind IN ('usage_report', 'error_notice', 'daily_summary'));
ALTER TABLE tax_documents ADD COLUMN sequence INT;
-- Which submission of the day the document belongs to: 0 the first, then 1, 2, … (BSLThu).
ALTER TABLE tax_documents ADD COLUMN supplement INT;
CREATE UNIQUE INDEX tax_documents_summary ON tax_documents (agency_code, period, sequence) WHERE kind = 'daily_summary';
-- A receipt may now be notified more than once (one notice per correction); the notice's
-- id is stable for the correction that made it.
DROP INDEX tax_documents_notice;
CREATE INDEX tax_documents_receipt ON tax_documents (receipt_id) WHERE receipt_id IS NOT NULL;

-- A series is used only once the tax authority accepted its registration (Circular 91
-- Art. 17: 01/ĐKTĐ-CTĐT answered on 01/TB-ĐKĐT); an operator records the acceptance.
CREATE TABLE series_registrations (
    agency_code  TEXT NOT NULL,
    template     TEXT NOT NULL,
    letters      TEXT NOT NULL,
    -- Number and date of the tax authority's acceptance notice 01/TB-ĐKĐT.
    notice       TEXT NOT NULL CHECK (length(notice) BETWEEN 3 AND 200),
    accepted_on  DATE NOT NULL,
    recorded_by  TEXT NOT NULL,
    db_login     TEXT,
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (agency_code, template, letters)
);
CREATE TRIGGER series_registrations_login BEFORE INSERT ON series_registrations
    FOR EACH ROW EXECUTE FUNCTION feepay_stamp_login();
CREATE RULE series_registrations_never_deleted AS ON DELETE TO series_registrations DO INSTEAD NOTHING;

-- Operators' corrections name their procedure: cancel (only receipts of the rules before 1
-- July 2026), notify (Art. 20.1), replace (Art. 20.2), or correct (the issuer decides
-- between notify and replace from what changes).
ALTER TABLE correction_requests ADD COLUMN kind TEXT;
UPDATE correction_requests SET kind = CASE WHEN replace IS NULL THEN 'cancel' ELSE 'replace' END;
ALTER TABLE correction_requests ALTER COLUMN kind SET NOT NULL;
ALTER TABLE correction_requests ADD CONSTRAINT correction_requests_kind_check
    CHECK (kind IN ('cancel', 'notify', 'replace', 'correct'));

GRANT SELECT, INSERT ON receipt_notices TO feepay_issuer;
GRANT SELECT ON series_registrations TO feepay_issuer;
GRANT SELECT ON receipt_notices TO feepay_lookup, feepay_notifier, feepay_operator;
GRANT SELECT (refund_id, payment_id, status, allocation, applied_at) ON refunds TO feepay_lookup;
GRANT SELECT, INSERT ON series_registrations TO feepay_operator;

ALTER TABLE receipt_notices ENABLE ROW LEVEL SECURITY;
ALTER TABLE series_registrations ENABLE ROW LEVEL SECURITY;
CREATE POLICY services ON receipt_notices TO feepay_issuer, feepay_notifier, feepay_lookup USING (true) WITH CHECK (true);
CREATE POLICY services ON series_registrations TO feepay_issuer USING (true);
CREATE POLICY operator_read ON receipt_notices FOR SELECT TO feepay_operator
    USING (receipt_id IN (SELECT receipt_id FROM receipts));
CREATE POLICY operator_read ON series_registrations FOR SELECT TO feepay_operator
    USING ((SELECT feepay_operator_scope()) @> ARRAY['*']
        OR agency_code = ANY ((SELECT feepay_operator_scope())::TEXT[]));
CREATE POLICY operator_register ON series_registrations FOR INSERT TO feepay_operator
    WITH CHECK ((SELECT feepay_operator_role()) IN ('operator', 'admin')
        AND ((SELECT feepay_operator_scope()) @> ARRAY['*']
             OR agency_code = ANY ((SELECT feepay_operator_scope())::TEXT[])));

-- The notifier tells the payer of an error notified on their receipt and of a refund.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_kind_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_kind_check
    CHECK (kind IN ('receipt_issued', 'receipt_cancelled', 'waiver_notice', 'receipt_notice', 'refund_recorded'));
