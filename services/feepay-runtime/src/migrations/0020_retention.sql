-- Personal data kept only as long as its purpose needs (see README, "Personal data"):
-- `receiptctl retention erase`, run daily by a login in the feepay_retention group, erases
-- what is due and records each run in the audit log. It may change only the columns that
-- hold personal data past their purpose, and mark when it did; it deletes only stored
-- dead-letter values. Receipts keep their signed document (the legal content).
ALTER TABLE receipts ADD COLUMN email_erased_at TIMESTAMPTZ;
ALTER TABLE deliveries ADD COLUMN erased_at TIMESTAMPTZ;
ALTER TABLE dead_letters ADD COLUMN erased_at TIMESTAMPTZ;
ALTER TABLE parked_events ADD COLUMN erased_at TIMESTAMPTZ;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'feepay_retention') THEN
        CREATE ROLE feepay_retention NOLOGIN;
    END IF;
END $$;
GRANT USAGE ON SCHEMA public TO feepay_retention;
GRANT SELECT ON seaql_migrations TO feepay_retention;
GRANT SELECT (receipt_id, issued_at, receipt_pb, email_erased_at), UPDATE (receipt_pb, email_erased_at)
    ON receipts TO feepay_retention;
GRANT SELECT (notification_id, status, created_at, sent_at, erased_at), UPDATE (recipient, event_pb, erased_at)
    ON deliveries TO feepay_retention;
GRANT SELECT (id, dead_lettered_at, erased_at), UPDATE (payload, headers, record_key, erased_at)
    ON dead_letters TO feepay_retention;
GRANT SELECT (sha256, stored_at), DELETE ON dead_letter_payloads TO feepay_retention;
GRANT SELECT (id, status, resolved_at, erased_at), UPDATE (payload, headers, record_key, erased_at)
    ON parked_events TO feepay_retention;
GRANT INSERT ON audit_log TO feepay_retention;
GRANT USAGE ON SEQUENCE audit_log_id_seq TO feepay_retention;
DO $$
DECLARE t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['receipts', 'deliveries', 'dead_letters', 'dead_letter_payloads', 'parked_events', 'audit_log'] LOOP
        EXECUTE format('CREATE POLICY retention ON %I TO feepay_retention USING (true) WITH CHECK (true)', t);
    END LOOP;
END $$;
