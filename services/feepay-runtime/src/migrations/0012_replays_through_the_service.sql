-- Dead-letter replays go through the service that owns the topic, as retry requests of
-- parked events, so an operator needs no right to write to the broker's input topics
-- (which would let them put any payment before the issuer). `receiptctl dead-letters
-- replay` inserts the (checked, possibly edited) event as a parked event with
-- reason_code 'dead_letter_replay' and status 'retry_requested', with its audit row, in
-- one transaction; the owning service applies it through its normal path.

ALTER TABLE parked_events ADD COLUMN db_login TEXT;
CREATE TRIGGER parked_events_login BEFORE INSERT ON parked_events
    FOR EACH ROW EXECUTE FUNCTION feepay_stamp_login();

GRANT INSERT (service, topic, partition, "offset", record_key, headers, payload, content_hash,
              subject, agency_code, reason_code, reason, status, attempts, parked_at,
              last_attempt_at, retry_requested_by, retry_requested_at)
    ON parked_events TO feepay_operator;
GRANT USAGE ON SEQUENCE parked_events_id_seq TO feepay_operator;

-- 0011 gave operators one policy for every command on parked_events; with an insert right
-- that would let any in-scope row in. Reading and asking for a retry stay scoped; an
-- insert must be a replay request by an operator or admin, for an agency in scope (the
-- owning service checks that the event really concerns that agency before applying it).
DROP POLICY operator_scope ON parked_events;
CREATE POLICY operator_read ON parked_events FOR SELECT TO feepay_operator
    USING ((SELECT feepay_operator_scope()) @> ARRAY['*']
        OR agency_code = ANY ((SELECT feepay_operator_scope())::TEXT[]));
CREATE POLICY operator_retry ON parked_events FOR UPDATE TO feepay_operator
    USING ((SELECT feepay_operator_role()) IN ('operator', 'admin')
        AND ((SELECT feepay_operator_scope()) @> ARRAY['*']
             OR agency_code = ANY ((SELECT feepay_operator_scope())::TEXT[])));
CREATE POLICY operator_replay ON parked_events FOR INSERT TO feepay_operator
    WITH CHECK ((SELECT feepay_operator_role()) IN ('operator', 'admin')
        AND reason_code = 'dead_letter_replay' AND status = 'retry_requested'
        AND ((SELECT feepay_operator_scope()) @> ARRAY['*']
             OR agency_code = ANY ((SELECT feepay_operator_scope())::TEXT[])));
