-- Least privilege in the database: one role per service and one for operators, each with
-- the rights it uses and no more. Roles are NOLOGIN groups; a deployment creates one login
-- user per process IN ROLE its group (see README, "Database roles"). Only the migrator (the
-- owner of the schema, used by `receiptctl migrate` and the Kubernetes migrate Job) runs DDL.
-- Roles belong to the cluster: creating one that exists (another database of the same
-- cluster, or a concurrent migration) is not an error.
DO $$
DECLARE r TEXT;
BEGIN
    FOREACH r IN ARRAY ARRAY['feepay_issuer', 'feepay_notifier', 'feepay_assessor', 'feepay_lookup', 'feepay_operator'] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', r);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END;
    END LOOP;
END $$;

GRANT USAGE ON SCHEMA public TO feepay_issuer, feepay_notifier, feepay_assessor, feepay_lookup, feepay_operator;
-- Every process checks that the schema is current before it starts.
GRANT SELECT ON seaql_migrations TO feepay_issuer, feepay_notifier, feepay_assessor, feepay_lookup, feepay_operator;

-- The public lookup service: read-only on exactly what it shows and verifies with.
GRANT SELECT ON receipts, signing_certificates, signing_keys TO feepay_lookup;

-- Consumers (issuer, notifier, assessor): reference data, parked events, dead letters too
-- large to carry inline.
GRANT SELECT ON reference_versions TO feepay_issuer, feepay_notifier, feepay_assessor;
GRANT SELECT, INSERT, UPDATE ON parked_events TO feepay_issuer, feepay_notifier, feepay_assessor;
GRANT USAGE ON SEQUENCE parked_events_id_seq TO feepay_issuer, feepay_notifier, feepay_assessor;
GRANT SELECT, INSERT ON dead_letter_payloads TO feepay_issuer, feepay_notifier, feepay_assessor;

-- The issuer: payments, receipts and their counters, refunds, its outbox, the certificates
-- it signs with, the documents for the tax authority, operators' corrections.
GRANT SELECT, INSERT, UPDATE ON payments, receipts, series_counters, refunds TO feepay_issuer;
GRANT SELECT, INSERT, DELETE ON outbox TO feepay_issuer, feepay_notifier;
GRANT USAGE ON SEQUENCE outbox_id_seq TO feepay_issuer, feepay_notifier;
GRANT SELECT, INSERT ON signing_certificates, tax_documents TO feepay_issuer;
GRANT SELECT, UPDATE ON correction_requests TO feepay_issuer;
GRANT INSERT ON audit_log TO feepay_issuer;
GRANT USAGE ON SEQUENCE audit_log_id_seq TO feepay_issuer;

-- The notifier: its delivery log and outbox; the receipts it reads to resend.
GRANT SELECT, INSERT, UPDATE ON deliveries TO feepay_notifier;
GRANT SELECT ON receipts TO feepay_notifier;

-- Operators (receiptctl): read what they list, write only requests and the audit log;
-- the issuer carries corrections out. Reference data, migrations and operators themselves
-- are the migrator's.
GRANT SELECT ON payments, receipts, refunds, deliveries, parked_events, dead_letter_payloads,
    dead_letter_replays, signing_certificates, signing_keys, tax_documents, correction_requests,
    reference_versions, agencies, series, fees, waiver_rules, operators, audit_log TO feepay_operator;
GRANT INSERT ON correction_requests, audit_log, dead_letter_replays TO feepay_operator;
GRANT UPDATE (status, retry_requested_by, retry_requested_at) ON parked_events TO feepay_operator;
GRANT UPDATE (status, attempts, next_attempt_at, last_error) ON deliveries TO feepay_operator;
GRANT USAGE ON SEQUENCE correction_requests_request_id_seq, audit_log_id_seq TO feepay_operator;
