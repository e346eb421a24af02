-- A correction request the issuer cannot carry out now (no usable certificate for its
-- agency, a series it cannot number in) used to stop the whole queue: the issuer served
-- requests in order and gave up at the first that failed, so one agency's missing key held
-- back every later correction of every agency. Such a request now waits on its own: its
-- error is kept, it is tried again later with a growing delay, and the others go on.
ALTER TABLE correction_requests
    ADD COLUMN attempts        INT NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at TIMESTAMPTZ,
    ADD COLUMN last_error      TEXT;
