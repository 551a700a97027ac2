-- Retention ages records by ingestion time (created_at), not by event time ("timestamp").
CREATE INDEX records_created_at ON records (created_at);
