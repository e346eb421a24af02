-- The audit log was readable by every operator login: a scoped operator read other
-- agencies' rows, and their lookup codes open the full signed receipt. Each row now carries
-- the agency it concerns, derived by the database from what the row is about (never taken
-- from the client), and an operator login reads the rows of its scope, plus its own.
-- Rows about no one agency (operators, dead letters, reference data) are read by
-- all-agency operators and by whoever wrote them.
ALTER TABLE audit_log ADD COLUMN agency_code TEXT;

CREATE FUNCTION feepay_audit_agency() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    head TEXT := split_part(split_part(NEW.target, ' ', 1), '/', 1);
BEGIN
    NEW.agency_code := NULL;
    IF NEW.action LIKE 'receipt.%' OR NEW.action LIKE 'delivery.%' THEN
        SELECT agency_code INTO NEW.agency_code FROM receipts WHERE lookup_code = NEW.target;
        IF NEW.agency_code IS NULL AND NEW.target ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' THEN
            SELECT agency_code INTO NEW.agency_code FROM receipts WHERE receipt_id = NEW.target::UUID;
        END IF;
    ELSIF NEW.action LIKE 'parked.%' AND NEW.target ~ '^[0-9]{1,18}$' THEN
        SELECT agency_code INTO NEW.agency_code FROM parked_events WHERE id = NEW.target::BIGINT;
    ELSIF NEW.action LIKE 'series.%' THEN
        SELECT code INTO NEW.agency_code FROM agencies WHERE code = head;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_log_agency BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION feepay_audit_agency();

-- Rows written before: the same derivation, once.
UPDATE audit_log a SET agency_code = r.agency_code FROM receipts r
    WHERE (a.action LIKE 'receipt.%' OR a.action LIKE 'delivery.%')
      AND (r.lookup_code = a.target OR r.receipt_id::TEXT = a.target);
UPDATE audit_log a SET agency_code = p.agency_code FROM parked_events p
    WHERE a.action LIKE 'parked.%' AND p.id::TEXT = a.target;
UPDATE audit_log a SET agency_code = g.code FROM agencies g
    WHERE a.action LIKE 'series.%' AND g.code = split_part(split_part(a.target, ' ', 1), '/', 1);

DROP POLICY operator_read ON audit_log;
CREATE POLICY operator_read ON audit_log FOR SELECT TO feepay_operator
    USING ((SELECT feepay_operator_scope()) @> ARRAY['*']
        OR agency_code = ANY ((SELECT feepay_operator_scope())::TEXT[])
        OR db_login = session_user);
