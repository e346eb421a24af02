-- Operators' corrections (cancel, replace), queued by receiptctl and carried out by the
-- issuer, which alone holds the signing keys: a replacement is signed, and so is the
-- notice to the tax authority that the cancelled receipt was issued in error.
CREATE TABLE correction_requests (
    request_id    BIGSERIAL PRIMARY KEY,
    -- Receipt id or lookup code.
    receipt       TEXT NOT NULL,
    reason        TEXT NOT NULL,
    -- The payer fields to change for a replacement; NULL to cancel only.
    replace       JSONB,
    actor         TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'refused')),
    -- What was done (cancelled receipt, replacement, its lookup code) or why it was refused.
    outcome       JSONB,
    requested_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    done_at       TIMESTAMPTZ
);
CREATE INDEX correction_requests_pending ON correction_requests (request_id) WHERE status = 'pending';
