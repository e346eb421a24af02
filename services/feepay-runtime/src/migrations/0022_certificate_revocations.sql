-- Revoked signing certificates: a revocation list the operators load (from the CA's notice
-- or CRL, or on their own finding that a key is compromised). The issuer signs nothing with
-- a certificate revoked at the signing time; the lookup service refuses a signature made
-- from the revocation time on, and says of an earlier one that its certificate was revoked
-- since. A revocation is never withdrawn (certificateHold is not offered): a certificate
-- that may be used again is not revoked.
CREATE TABLE certificate_revocations (
    fingerprint  TEXT PRIMARY KEY REFERENCES signing_certificates (fingerprint),
    -- From when signatures made with it are not accepted (RFC 5280: the invalidity date
    -- for a compromised key, else the CA's revocation date).
    revoked_at   TIMESTAMPTZ NOT NULL,
    -- RFC 5280 §5.3.1 reason codes, in snake case.
    reason       TEXT NOT NULL CHECK (reason IN ('unspecified', 'key_compromise', 'ca_compromise',
        'affiliation_changed', 'superseded', 'cessation_of_operation', 'privilege_withdrawn')),
    note         TEXT,
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    recorded_by  TEXT NOT NULL
);

GRANT SELECT ON certificate_revocations TO feepay_issuer, feepay_lookup, feepay_operator;

-- Records a revocation. An operator login needs the admin role and the certificate's
-- agency in scope; its name comes from its operator row (a caller that is no operator
-- login, the schema owner, acts as `p_by`). The revocation time (NULL: now) may not lie in
-- the future.
-- Returns (outcome, receipts_after): 'revoked' with the number of receipts already signed
-- with it from the revocation time on (to be replaced), 'already_revoked', or 'unknown'
-- (no such certificate in the caller's scope).
CREATE FUNCTION feepay_revoke_certificate(p_fingerprint TEXT, p_revoked_at TIMESTAMPTZ, p_reason TEXT,
                                          p_note TEXT, p_by TEXT)
    RETURNS TABLE (outcome TEXT, receipts_after BIGINT)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    op_login BOOLEAN := pg_has_role(session_user, 'feepay_operator', 'MEMBER')
        AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = session_user);
    me operators%ROWTYPE;
    scope TEXT[] := ARRAY['*'];
    actor TEXT := p_by;
    cert signing_certificates%ROWTYPE;
    after BIGINT;
    since TIMESTAMPTZ := COALESCE(p_revoked_at, now());
BEGIN
    IF op_login THEN
        SELECT * INTO me FROM operators WHERE db_login = session_user AND revoked_at IS NULL;
        IF NOT FOUND OR me.role <> 'admin' THEN
            RAISE EXCEPTION 'revoking a certificate needs the admin role'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        actor := me.name;
        scope := feepay_operator_scope();
    END IF;
    IF since > now() THEN
        RAISE EXCEPTION 'a revocation takes effect now or in the past, not at %', since
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO cert FROM signing_certificates WHERE fingerprint = p_fingerprint;
    IF NOT FOUND OR NOT (scope @> ARRAY['*'] OR cert.agency_code = ANY (scope)) THEN
        RETURN QUERY SELECT 'unknown'::TEXT, NULL::BIGINT;
        RETURN;
    END IF;
    INSERT INTO certificate_revocations (fingerprint, revoked_at, reason, note, recorded_by)
        VALUES (p_fingerprint, since, p_reason, p_note, actor)
        ON CONFLICT (fingerprint) DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'already_revoked'::TEXT, NULL::BIGINT;
        RETURN;
    END IF;
    SELECT count(*) INTO after FROM receipts WHERE key_id = p_fingerprint AND issued_at >= since;
    INSERT INTO audit_log (actor, action, target, reason, details)
        VALUES (actor, 'certificates.revoke', p_fingerprint, p_note,
                jsonb_build_object('serial', cert.serial, 'issuer', cert.issuer, 'reason', p_reason,
                                   'revoked_at', since, 'receipts_after', after));
    RETURN QUERY SELECT 'revoked'::TEXT, after;
END $$;
REVOKE ALL ON FUNCTION feepay_revoke_certificate(TEXT, TIMESTAMPTZ, TEXT, TEXT, TEXT) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION feepay_revoke_certificate(TEXT, TIMESTAMPTZ, TEXT, TEXT, TEXT) TO feepay_operator;

-- Audit rows of revocations concern the certificate's agency.
CREATE OR REPLACE FUNCTION feepay_audit_agency() RETURNS trigger
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
    ELSIF NEW.action LIKE 'dead_letters.%' AND NEW.target ~ '^[0-9]{1,18}$' THEN
        SELECT agency_code INTO NEW.agency_code FROM dead_letters WHERE id = NEW.target::BIGINT;
    ELSIF NEW.action LIKE 'certificates.%' THEN
        SELECT agency_code INTO NEW.agency_code FROM signing_certificates WHERE fingerprint = NEW.target;
    ELSIF NEW.action LIKE 'series.%' THEN
        SELECT code INTO NEW.agency_code FROM agencies WHERE code = head;
    END IF;
    RETURN NEW;
END $$;
