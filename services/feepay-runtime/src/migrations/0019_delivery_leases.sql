-- A sending pass stamps the deliveries it claims with its token and renews their lease
-- while it works; it records outcomes only on rows that still carry its token. Before, a
-- fixed lease shorter than a pass to a slow mail server let a second notifier take the
-- same rows and send the same emails again.
ALTER TABLE deliveries ADD COLUMN claim_token UUID;
