-- A retry of a parked event is asked through feepay_request_retry, never by writing
-- parked_events. Until now operator logins held UPDATE on its status: a login could mark a
-- parked payment 'resolved' without it ever being applied (the payment vanished from every
-- list and its alert cleared), and the requester's name was whatever the client wrote.
-- Now an operator login can only move a parked event of its scope from 'parked' to
-- 'retry_requested'; the requester's name comes from its operator row; the audit row is
-- written in the same statement (stamped with the real login by audit_log_login). Only the
-- owning service marks an event resolved, after applying it.
REVOKE UPDATE ON parked_events FROM feepay_operator;
DROP POLICY operator_retry ON parked_events;

-- Returns the event's state after the call: 'retry_requested' when this call asked for it,
-- the unchanged state when it was not parked, NULL when there is no such event in scope
-- (unknown and out of scope get the same answer). A caller that is no operator login (the
-- schema owner, before the first operator exists or as break-glass) acts under `p_by`.
CREATE FUNCTION feepay_request_retry(p_id BIGINT, p_reason TEXT, p_by TEXT) RETURNS TEXT
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    op_login BOOLEAN := pg_has_role(session_user, 'feepay_operator', 'MEMBER')
        AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = session_user);
    me operators%ROWTYPE;
    scope TEXT[] := ARRAY['*'];
    actor TEXT := p_by;
    ev parked_events%ROWTYPE;
BEGIN
    IF op_login THEN
        SELECT * INTO me FROM operators WHERE db_login = session_user AND revoked_at IS NULL;
        IF NOT FOUND OR me.role NOT IN ('operator', 'admin') THEN
            RAISE EXCEPTION 'retrying a parked event needs the operator or admin role'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        actor := me.name;
        scope := feepay_operator_scope();
    END IF;
    SELECT * INTO ev FROM parked_events WHERE id = p_id FOR UPDATE;
    IF NOT FOUND OR NOT (scope @> ARRAY['*'] OR ev.agency_code = ANY (scope)) THEN
        RETURN NULL;
    END IF;
    IF ev.status <> 'parked' THEN
        RETURN ev.status;
    END IF;
    UPDATE parked_events SET status = 'retry_requested', retry_requested_by = actor, retry_requested_at = now()
        WHERE id = p_id;
    INSERT INTO audit_log (actor, action, target, reason, details)
        VALUES (actor, 'parked.retry', p_id::TEXT, p_reason,
                jsonb_build_object('subject', ev.subject, 'reason_code', ev.reason_code));
    RETURN 'retry_requested';
END $$;
REVOKE ALL ON FUNCTION feepay_request_retry(BIGINT, TEXT, TEXT) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION feepay_request_retry(BIGINT, TEXT, TEXT) TO feepay_operator;
