-- Operators' scope, enforced by the database itself, so a login in the feepay_operator
-- role sees and files requests only for its agency subtree even with psql, not only
-- through receiptctl.
--
-- Each operator is bound to one PostgreSQL login (`receiptctl operators add NAME
-- --db-login LOGIN`); the login's rights are those of its operator: rows of agencies
-- outside the scope are invisible (row-level security), corrections and replays need the
-- operator or admin role, and only an admin adds or revokes operators within its subtree.
-- A login in the role that is bound to no active operator sees nothing. The schema owner
-- (the migrator) is not subject to these policies; it is the break-glass account.
--
-- Who really acted is stamped by the database (`db_login`, from session_user) on the
-- audit log, correction requests and replays, whatever the client writes.

ALTER TABLE operators ADD COLUMN db_login TEXT UNIQUE;
ALTER TABLE audit_log ADD COLUMN db_login TEXT;
ALTER TABLE correction_requests ADD COLUMN db_login TEXT;
ALTER TABLE dead_letter_replays ADD COLUMN db_login TEXT;

CREATE FUNCTION feepay_stamp_login() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.db_login := session_user;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_log_login BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION feepay_stamp_login();
CREATE TRIGGER correction_requests_login BEFORE INSERT ON correction_requests
    FOR EACH ROW EXECUTE FUNCTION feepay_stamp_login();
CREATE TRIGGER dead_letter_replays_login BEFORE INSERT ON dead_letter_replays
    FOR EACH ROW EXECUTE FUNCTION feepay_stamp_login();

-- The agency codes the login's operator covers ('*' for all); empty when the login is bound
-- to no active operator. Runs as the owner to read `operators` and `agencies` whatever the
-- caller's policies; policies call it as `(SELECT feepay_operator_scope())`, an init plan
-- evaluated once per statement, not once per row.
CREATE FUNCTION feepay_operator_scope() RETURNS TEXT[]
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    WITH RECURSIVE me AS (
        SELECT scope FROM operators WHERE db_login = session_user AND revoked_at IS NULL
    ), subtree(code) AS (
        SELECT scope FROM me
        UNION
        SELECT a.code FROM agencies a JOIN subtree s ON a.parent = s.code
    )
    SELECT coalesce(array_agg(code), '{}') FROM subtree
$$;

-- The login's operator role ('auditor', 'operator', 'admin'), NULL when unbound.
CREATE FUNCTION feepay_operator_role() RETURNS TEXT
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
    SELECT role FROM operators WHERE db_login = session_user AND revoked_at IS NULL
$$;

REVOKE ALL ON FUNCTION feepay_operator_scope(), feepay_operator_role() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION feepay_operator_scope(), feepay_operator_role() TO feepay_operator;

-- Row-level security on what an operator reads or writes. The services keep seeing every
-- row (their grants already say what they may do).
DO $$
DECLARE t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['payments', 'receipts', 'refunds', 'deliveries', 'parked_events',
                             'tax_documents', 'correction_requests', 'operators',
                             'dead_letter_replays', 'dead_letter_payloads', 'audit_log'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY services ON %I TO feepay_issuer, feepay_notifier, feepay_assessor, feepay_lookup USING (true) WITH CHECK (true)', t);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['payments', 'receipts', 'deliveries', 'parked_events', 'tax_documents'] LOOP
        EXECUTE format(
            'CREATE POLICY operator_scope ON %I TO feepay_operator '
            'USING ((SELECT feepay_operator_scope()) @> ARRAY[''*''] OR agency_code = ANY ((SELECT feepay_operator_scope())::TEXT[]))', t);
    END LOOP;
END $$;

-- Refunds and requests name a payment or receipt: visible when it is.
CREATE POLICY operator_scope ON refunds FOR SELECT TO feepay_operator
    USING (payment_id IN (SELECT payment_id FROM payments));
CREATE POLICY operator_read ON correction_requests FOR SELECT TO feepay_operator
    USING (receipt IN (SELECT receipt_id::TEXT FROM receipts UNION ALL SELECT lookup_code FROM receipts));
-- A correction needs the operator or admin role and a receipt in scope.
CREATE POLICY operator_request ON correction_requests FOR INSERT TO feepay_operator
    WITH CHECK ((SELECT feepay_operator_role()) IN ('operator', 'admin')
        AND receipt IN (SELECT receipt_id::TEXT FROM receipts UNION ALL SELECT lookup_code FROM receipts));

-- Dead letters: bodies of any agency, so all-agency operators only (receiptctl shows a scoped
-- operator those of its agencies by decoding them, which needs the all-agency view; a
-- scoped operator asks an all-agency one).
CREATE POLICY operator_read ON dead_letter_payloads FOR SELECT TO feepay_operator
    USING ((SELECT feepay_operator_scope()) @> ARRAY['*']);
CREATE POLICY operator_read ON dead_letter_replays FOR SELECT TO feepay_operator USING (true);
CREATE POLICY operator_replay ON dead_letter_replays FOR INSERT TO feepay_operator
    WITH CHECK ((SELECT feepay_operator_role()) IN ('operator', 'admin'));

-- The audit log: everyone reads it (it names operators and targets, not personal data);
-- entries are stamped with the real login.
CREATE POLICY operator_read ON audit_log FOR SELECT TO feepay_operator USING (true);
CREATE POLICY operator_write ON audit_log FOR INSERT TO feepay_operator
    WITH CHECK ((SELECT feepay_operator_role()) IS NOT NULL);

-- Operators: all are listed (name, role, scope); an admin adds and revokes operators whose
-- scope lies within its own subtree, and can change nothing but the revocation time.
CREATE POLICY operator_read ON operators FOR SELECT TO feepay_operator USING (true);
CREATE POLICY admin_add ON operators FOR INSERT TO feepay_operator
    WITH CHECK ((SELECT feepay_operator_role()) = 'admin'
        AND ((SELECT feepay_operator_scope()) @> ARRAY['*'] OR scope = ANY ((SELECT feepay_operator_scope())::TEXT[])));
CREATE POLICY admin_revoke ON operators FOR UPDATE TO feepay_operator
    USING ((SELECT feepay_operator_role()) = 'admin'
        AND ((SELECT feepay_operator_scope()) @> ARRAY['*'] OR scope = ANY ((SELECT feepay_operator_scope())::TEXT[])))
    WITH CHECK (true);
GRANT INSERT (name, role, scope, token_sha256, created_by, db_login) ON operators TO feepay_operator;
GRANT UPDATE (revoked_at) ON operators TO feepay_operator;

-- The issuer checks who asked for a correction before carrying it out.
GRANT SELECT ON operators TO feepay_issuer;
