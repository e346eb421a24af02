-- A ReceiptIssued event is the receipt row itself (its protobuf and signed document); the
-- outbox row only points at it, so each receipt's 4 KB is written once, not twice. The
-- relay reads the receipt when it publishes. payload stays empty for such rows.
ALTER TABLE outbox ADD COLUMN receipt_ref UUID;
