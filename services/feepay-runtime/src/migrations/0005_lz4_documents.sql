-- Receipt documents and protobufs are compressed out of line (TOAST). lz4 costs a fraction
-- of the default pglz's CPU per receipt, which the benchmark showed on the issuer's path.
ALTER TABLE receipts ALTER COLUMN document SET COMPRESSION lz4;
ALTER TABLE receipts ALTER COLUMN receipt_pb SET COMPRESSION lz4;
ALTER TABLE deliveries ALTER COLUMN event_pb SET COMPRESSION lz4;
ALTER TABLE outbox ALTER COLUMN payload SET COMPRESSION lz4;
