-- bridge_events: Databricks -> SQL Server sync requests and pipeline runs, applied by
-- `bridge serve`.
--
-- A Databricks job asks for a pipeline run with operation 'RUN', `pipeline` and optionally
-- `country` and `params` (see the example below); the server runs it as created_by, once, and
-- writes back status, rows_affected (rows its sinks wrote), error_message and job_id.
-- A table made by an older bridge lacks the four RUN columns: `bridge setup-events-table --apply`
-- adds them in place (ALTER TABLE ... ADD COLUMNS); old rows read them as NULL and old writers,
-- which name their columns, keep working.
--
-- A Databricks job asks for a sync by inserting one row with status 'pending' (see the example
-- below). A server's events poller claims it (status 'running', started_at, claimed_by: a
-- conditional UPDATE ... WHERE status = 'pending', so exactly one server wins), applies it to SQL
-- Server in one transaction that also records event_id in dbo.bridge_applied_keys, then writes
-- status 'completed' (rows_affected) or 'failed' (error_message) and completed_at.
--
-- A 'running' event whose started_at is older than the servers' lease (10 minutes by default)
-- is taken over by another server and applied again; the recorded event_id makes that second
-- application a no-op that reports the first one's rows_affected.
--
-- `bridge serve` without Databricks keeps the same table as a local Delta table (the columns and
-- types below are checked by tests/sync_events.rs). Deletion vectors and row tracking give
-- Databricks row-level concurrency: claims of different events do not conflict. Liquid
-- clustering on `status` keeps the pending and running rows in few files, so the servers' polls
-- and claims (`WHERE status = 'pending'`) skip the files of finished events whatever the history;
-- `bridge setup-events-table --apply` also clusters a table made by an older bridge.

CREATE TABLE IF NOT EXISTS bridge.events.bridge_events (
  event_id       STRING        NOT NULL COMMENT 'Unique id of the event (a UUID); also the idempotency key of the SQL Server write',
  operation      STRING        NOT NULL COMMENT 'INSERT, UPSERT, UPDATE, DELETE or RUN',
  source_table   STRING        NOT NULL COMMENT 'Table the rows come from: catalog.schema.table ('''' for RUN)',
  target_table   STRING        NOT NULL COMMENT 'SQL Server table written: schema.table ('''' for RUN)',
  primary_keys   ARRAY<STRING>          COMMENT 'Key columns; UPSERT, UPDATE and DELETE need at least one',
  filter         STRING                 COMMENT 'One SQL boolean expression over the source''s columns; NULL syncs every row',
  status         STRING        NOT NULL COMMENT 'pending, running, completed or failed',
  rows_affected  BIGINT                 COMMENT 'Rows inserted, updated or deleted (completed events)',
  error_message  STRING                 COMMENT 'Why the event failed (failed events)',
  created_at     TIMESTAMP     NOT NULL COMMENT 'When the event was submitted (UTC)',
  started_at     TIMESTAMP              COMMENT 'When the current claim started (UTC); a running event older than the lease is reclaimed',
  completed_at   TIMESTAMP              COMMENT 'When the event completed or failed (UTC)',
  created_by     STRING                 COMMENT 'Who submitted the event (checked against the server''s permissions)',
  claimed_by     STRING                 COMMENT 'Worker id of the server that claimed the event',
  pipeline       STRING                 COMMENT 'RUN: the pipeline to run (its name under pipelines/)',
  country        STRING                 COMMENT 'RUN: the country whose parameters the run uses',
  params         STRING                 COMMENT 'RUN: parameter overrides, the text of a JSON object',
  job_id         STRING                 COMMENT 'RUN: the server job that ran the pipeline'
)
USING DELTA
CLUSTER BY (status)
COMMENT 'Databricks -> SQL Server sync requests and pipeline runs (bridge serve)'
TBLPROPERTIES (
  'delta.enableDeletionVectors' = 'true',
  'delta.enableRowTracking' = 'true'
);

-- Asking for a sync from a Databricks job:
--
-- INSERT INTO bridge.events.bridge_events
--   (event_id, operation, source_table, target_table, primary_keys, filter, status, created_at, created_by)
-- VALUES
--   (uuid(), 'UPSERT', 'main.calibration.results', 'dbo.CalibrationResults',
--    array('household_id', 'period'), 'period = ''2024-06''', 'pending', current_timestamp(),
--    'job:calibration');
--
-- Asking for a pipeline run:
--
-- INSERT INTO bridge.events.bridge_events
--   (event_id, operation, source_table, target_table, status, created_at, created_by,
--    pipeline, country, params)
-- VALUES
--   (uuid(), 'RUN', '', '', 'pending', current_timestamp(), 'job:calibration',
--    'demo', 'colombia', '{"min_amount": 10}');
