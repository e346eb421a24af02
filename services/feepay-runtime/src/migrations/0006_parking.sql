-- Events that fail on their own (no usable signing key or certificate, an exhausted series,
-- a refund whose series left the reference data, a stored row that does not decode, or any
-- error that bisecting the batch pins on one event). The event is kept here with its reason
-- and the rest of its batch goes on; an operator asks for a retry after the fix and the
-- owning service applies it again through its normal path. Never deleted.
CREATE TABLE parked_events (
    id                  BIGSERIAL PRIMARY KEY,
    service             TEXT NOT NULL,
    topic               TEXT NOT NULL,
    partition           INT NOT NULL,
    "offset"            BIGINT NOT NULL,
    record_key          BYTEA NOT NULL,
    headers             JSONB NOT NULL,
    payload             BYTEA NOT NULL,
    content_hash        TEXT NOT NULL,
    subject             TEXT NOT NULL,
    agency_code         TEXT,
    reason_code         TEXT NOT NULL,
    reason              TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('parked', 'retry_requested', 'resolved')),
    attempts            INT NOT NULL DEFAULT 1,
    parked_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_attempt_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    retry_requested_by  TEXT,
    retry_requested_at  TIMESTAMPTZ,
    resolved_at         TIMESTAMPTZ
);
-- One open row per event: a redelivered event that fails again updates it.
CREATE UNIQUE INDEX parked_events_open ON parked_events (service, subject, content_hash) WHERE status <> 'resolved';
CREATE INDEX parked_events_retry ON parked_events (service, id) WHERE status = 'retry_requested';
ALTER TABLE parked_events ALTER COLUMN payload SET COMPRESSION lz4;

-- The payload of a dead letter too large to travel inside the dead-letter topic: the dead
-- letter names it by SHA-256 and size, the bytes are kept here.
CREATE TABLE dead_letter_payloads (
    sha256     TEXT PRIMARY KEY,
    size       BIGINT NOT NULL,
    payload    BYTEA NOT NULL,
    topic      TEXT NOT NULL,
    partition  INT NOT NULL,
    "offset"   BIGINT NOT NULL,
    stored_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
ALTER TABLE dead_letter_payloads ALTER COLUMN payload SET COMPRESSION lz4;

-- A refund kept back by a permanent failure of its own (its payment's stored receipt does
-- not decode, its series left the reference data) waits as 'parked' until retried.
ALTER TABLE refunds DROP CONSTRAINT refunds_status_check;
ALTER TABLE refunds ADD CONSTRAINT refunds_status_check CHECK (status IN ('pending', 'applied', 'rejected', 'parked'));
