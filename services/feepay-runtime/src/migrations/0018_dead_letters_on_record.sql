-- Dead letters on record, replays only of what a service recorded.
--
-- Until now a replay was a row an operator login inserted into parked_events: any body the
-- client chose, for any agency of its scope. A scoped operator could make the issuer sign a
-- receipt for a payment that never happened, or the notifier send an official email with
-- any content, without any dead letter existing. Now:
--   * the service that dead-letters a record writes it here (the record's key, headers and
--     value, its reason, and what the event is as the service reads it without validating:
--     its subject, agency and the facts an operator must not change, such as the payment's
--     id and amount), before the dead letter goes to the `.dlq` topic;
--   * operators read these rows under row-level security (their agencies only), so they
--     need no access to the `.dlq` topics at all;
--   * a replay is asked through feepay_request_replay, which copies the recorded record
--     (an edited body replaces only the value and its content type) into parked_events as
--     a retry request tied to the dead letter, and writes the audit row, in one statement;
--     operator logins can no longer insert into parked_events;
--   * the owning service applies a replay only when its body is the recorded one, or when
--     the edited body is the same event (same identity facts) as the one recorded.

CREATE TABLE dead_letters (
    id                BIGSERIAL PRIMARY KEY,
    service           TEXT NOT NULL,
    topic             TEXT NOT NULL,
    partition         INTEGER NOT NULL,
    "offset"          BIGINT NOT NULL,
    record_key        BYTEA NOT NULL,
    -- [[name, hex value], ...], within the dead letter's header budget.
    headers           JSONB NOT NULL,
    headers_truncated BOOLEAN NOT NULL,
    payload           BYTEA NOT NULL,
    payload_sha256    TEXT NOT NULL,
    -- {"subject": ..., "agency": ..., "facts": {...}} as the service read the record
    -- without validating it; NULL when not even that could be read.
    identity          JSONB,
    subject           TEXT,
    agency_code       TEXT,
    reason_code       TEXT NOT NULL,
    reason            TEXT NOT NULL,
    dead_lettered_at  TIMESTAMPTZ NOT NULL,
    db_login          TEXT,
    replays           INTEGER NOT NULL DEFAULT 0,
    last_replayed_at  TIMESTAMPTZ,
    last_replayed_by  TEXT,
    UNIQUE (service, topic, partition, "offset")
);
CREATE INDEX dead_letters_at ON dead_letters (dead_lettered_at);
CREATE TRIGGER dead_letters_login BEFORE INSERT ON dead_letters
    FOR EACH ROW EXECUTE FUNCTION feepay_stamp_login();

GRANT SELECT, INSERT ON dead_letters TO feepay_issuer, feepay_notifier, feepay_assessor;
GRANT USAGE ON SEQUENCE dead_letters_id_seq TO feepay_issuer, feepay_notifier, feepay_assessor;
GRANT SELECT ON dead_letters TO feepay_operator;
ALTER TABLE dead_letters ENABLE ROW LEVEL SECURITY;
-- A service writes and reads only its own dead letters.
CREATE POLICY own_service ON dead_letters TO feepay_issuer
    USING (service = 'feepay_issuer') WITH CHECK (service = 'feepay_issuer');
CREATE POLICY own_service_notifier ON dead_letters TO feepay_notifier
    USING (service = 'feepay_notifier') WITH CHECK (service = 'feepay_notifier');
CREATE POLICY own_service_assessor ON dead_letters TO feepay_assessor
    USING (service = 'feepay_assessor') WITH CHECK (service = 'feepay_assessor');
-- An operator reads those of the agencies in scope; one that names no agency is read by
-- all-agency operators only.
CREATE POLICY operator_read ON dead_letters FOR SELECT TO feepay_operator
    USING ((SELECT feepay_operator_scope()) @> ARRAY['*']
        OR agency_code = ANY ((SELECT feepay_operator_scope())::TEXT[]));

-- The value of an oversized dead letter is on record here now; operators no longer read the
-- unscoped payload store.
REVOKE SELECT ON dead_letter_payloads FROM feepay_operator;
DROP POLICY operator_read ON dead_letter_payloads;

-- A replay names the dead letter it replays.
ALTER TABLE parked_events ADD COLUMN dead_letter_id BIGINT REFERENCES dead_letters (id);

-- Operator logins no longer write parked_events or the old replay record.
DROP POLICY operator_replay ON parked_events;
REVOKE INSERT ON parked_events FROM feepay_operator;
REVOKE USAGE ON SEQUENCE parked_events_id_seq FROM feepay_operator;
DROP POLICY operator_replay ON dead_letter_replays;
REVOKE INSERT ON dead_letter_replays FROM feepay_operator;

-- Asks the service that recorded dead letter `p_id` to apply it again: with its recorded
-- value, or with `p_body` (content type `p_content_type`, JSON or protobuf) in its place.
-- Returns (outcome, parked_id):
--   'requested'       a retry request was written (parked_id names it) with its audit row;
--   'open'            the same event is parked or waiting for its retry already;
--   'replayed_before' it was replayed before and `p_again` is false (nothing written);
--   'unknown'         no such dead letter in the caller's scope (unknown and out of scope
--                     get the same answer).
-- For an operator login the role must be operator or admin and the requester's name comes
-- from its operator row; a caller that is no operator login (the schema owner) acts as `p_by`.
CREATE FUNCTION feepay_request_replay(p_id BIGINT, p_body BYTEA, p_content_type TEXT, p_reason TEXT,
                                      p_by TEXT, p_again BOOLEAN)
    RETURNS TABLE (outcome TEXT, parked_id BIGINT)
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    op_login BOOLEAN := pg_has_role(session_user, 'feepay_operator', 'MEMBER')
        AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = session_user);
    me operators%ROWTYPE;
    scope TEXT[] := ARRAY['*'];
    actor TEXT := p_by;
    dl dead_letters%ROWTYPE;
    body BYTEA;
    hdrs JSONB;
    new_id BIGINT;
BEGIN
    IF op_login THEN
        SELECT * INTO me FROM operators WHERE db_login = session_user AND revoked_at IS NULL;
        IF NOT FOUND OR me.role NOT IN ('operator', 'admin') THEN
            RAISE EXCEPTION 'replaying a dead letter needs the operator or admin role'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        actor := me.name;
        scope := feepay_operator_scope();
    END IF;
    IF (p_body IS NULL) <> (p_content_type IS NULL) THEN
        RAISE EXCEPTION 'an edited body needs its content type, and only an edited body has one'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_content_type IS NOT NULL AND p_content_type NOT IN ('application/json', 'application/protobuf') THEN
        RAISE EXCEPTION 'an edited body is application/json or application/protobuf, not %', p_content_type
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO dl FROM dead_letters WHERE id = p_id FOR UPDATE;
    IF NOT FOUND OR NOT (scope @> ARRAY['*'] OR dl.agency_code = ANY (scope)) THEN
        RETURN QUERY SELECT 'unknown'::TEXT, NULL::BIGINT;
        RETURN;
    END IF;
    IF dl.replays > 0 AND NOT p_again THEN
        RETURN QUERY SELECT 'replayed_before'::TEXT, NULL::BIGINT;
        RETURN;
    END IF;
    body := COALESCE(p_body, dl.payload);
    hdrs := COALESCE((SELECT jsonb_agg(h) FROM jsonb_array_elements(dl.headers) h
                      WHERE p_content_type IS NULL OR lower(h->>0) <> 'content-type'), '[]'::JSONB);
    IF p_content_type IS NOT NULL THEN
        hdrs := hdrs || jsonb_build_array(jsonb_build_array('content-type', encode(convert_to(p_content_type, 'UTF8'), 'hex')));
    END IF;
    hdrs := hdrs
        || jsonb_build_array(jsonb_build_array('feepay_replayed_from', encode(convert_to('dead_letter:' || dl.id, 'UTF8'), 'hex')))
        || jsonb_build_array(jsonb_build_array('feepay_replayed_by', encode(convert_to(actor, 'UTF8'), 'hex')));
    INSERT INTO parked_events (service, topic, partition, "offset", record_key, headers, payload, content_hash,
                               subject, agency_code, reason_code, reason, status, attempts, parked_at,
                               last_attempt_at, retry_requested_by, retry_requested_at, dead_letter_id)
        VALUES (dl.service, dl.topic, dl.partition, dl."offset", dl.record_key, hdrs, body,
                encode(sha256(body), 'hex'), COALESCE(dl.subject, 'dead_letter:' || dl.id), dl.agency_code,
                'dead_letter_replay', format('replay of dead letter %s requested by %s: %s', dl.id, actor, p_reason),
                'retry_requested', 0, now(), now(), actor, now(), dl.id)
        ON CONFLICT (service, subject, content_hash) WHERE status <> 'resolved' DO NOTHING
        RETURNING id INTO new_id;
    IF new_id IS NULL THEN
        RETURN QUERY SELECT 'open'::TEXT, NULL::BIGINT;
        RETURN;
    END IF;
    UPDATE dead_letters SET replays = replays + 1, last_replayed_at = now(), last_replayed_by = actor
        WHERE id = dl.id;
    INSERT INTO audit_log (actor, action, target, reason, details)
        VALUES (actor, 'dead_letters.replay', dl.id::TEXT, p_reason,
                jsonb_build_object('edited', p_body IS NOT NULL, 'again', dl.replays > 0,
                                   'service', dl.service, 'target_topic', dl.topic, 'subject', dl.subject,
                                   'parked_event', new_id, 'body_sha256', encode(sha256(body), 'hex'),
                                   'body_bytes', octet_length(body), 'original_sha256', dl.payload_sha256));
    RETURN QUERY SELECT 'requested'::TEXT, new_id;
END $$;
REVOKE ALL ON FUNCTION feepay_request_replay(BIGINT, BYTEA, TEXT, TEXT, TEXT, BOOLEAN) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION feepay_request_replay(BIGINT, BYTEA, TEXT, TEXT, TEXT, BOOLEAN) TO feepay_operator;

-- Audit rows of replays concern the dead letter's agency.
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
    ELSIF NEW.action LIKE 'series.%' THEN
        SELECT code INTO NEW.agency_code FROM agencies WHERE code = head;
    END IF;
    RETURN NEW;
END $$;
