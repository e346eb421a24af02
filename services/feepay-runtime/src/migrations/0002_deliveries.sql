-- The notifier's delivery log: one row per notification (one per receipt event).
CREATE TABLE deliveries (
    notification_id  TEXT PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('receipt_issued', 'receipt_cancelled', 'waiver_notice')),
    payment_id       TEXT NOT NULL,
    receipt_id       TEXT,
    agency_code      TEXT NOT NULL,
    recipient        TEXT,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'failed', 'skipped')),
    attempts         INT NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ,
    last_error       TEXT,
    message_id       TEXT NOT NULL,
    event_pb         BYTEA NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at          TIMESTAMPTZ,
    -- Payment time of the event, for end-to-end latency figures.
    paid_at          TIMESTAMPTZ
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'queued';
CREATE INDEX deliveries_receipt ON deliveries (receipt_id);
