-- Operator logins could update any delivery of their scope whatever their role: an auditor
-- (read-only) could requeue emails, and any login could mark a failed email 'sent', which
-- hid it from the failed list and its alert. Now reading stays scoped, and the only change
-- a login may make is a resend — back to 'queued' with no attempts and no error — and only
-- with the operator or admin role. Only the notifier records an email as sent.
DROP POLICY operator_scope ON deliveries;
CREATE POLICY operator_read ON deliveries FOR SELECT TO feepay_operator
    USING ((SELECT feepay_operator_scope()) @> ARRAY['*']
        OR agency_code = ANY ((SELECT feepay_operator_scope())::TEXT[]));
CREATE POLICY operator_resend ON deliveries FOR UPDATE TO feepay_operator
    USING ((SELECT feepay_operator_role()) IN ('operator', 'admin')
        AND ((SELECT feepay_operator_scope()) @> ARRAY['*']
             OR agency_code = ANY ((SELECT feepay_operator_scope())::TEXT[])))
    WITH CHECK (status = 'queued' AND attempts = 0 AND last_error IS NULL);
