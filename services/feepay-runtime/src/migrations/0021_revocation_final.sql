-- A scoped admin could clear revoked_at on an operator of its scope, bringing back an
-- operator a wider admin had revoked (the token works again). An operator login may now
-- only revoke an active operator: the row must be active before and revoked after. A
-- revoked operator stays revoked; whoever should act again gets a new operator and token.
DROP POLICY admin_revoke ON operators;
CREATE POLICY admin_revoke ON operators FOR UPDATE TO feepay_operator
    USING (revoked_at IS NULL
        AND (SELECT feepay_operator_role()) = 'admin'
        AND ((SELECT feepay_operator_scope()) @> ARRAY['*'] OR scope = ANY ((SELECT feepay_operator_scope())::TEXT[])))
    WITH CHECK (revoked_at IS NOT NULL);
