-- Write-audit-publish: one row per staged version of a date's output and quarantine
-- (tagger/job/publish.py). A version is identified by the run id and a digest of its content,
-- so an identical rerun stages nothing new. Appended; the newest row of a version wins.
CREATE TABLE IF NOT EXISTS IDENTIFIER(:table) (
  version STRING,
  run_id STRING,
  model_version STRING,
  rules_version STRING,
  staged_at STRING,
  output_location STRING,
  quarantine_location STRING,
  items BIGINT,
  quarantine_rows BIGINT,
  outcome STRING COMMENT 'passed | warned | refused (by the audits)',
  audits STRING COMMENT 'JSON list of {audit, level, status, value, limit, message}',
  input_digest STRING COMMENT 'digest of the date''s input rows (tagger/job/extract.py): a backfill skips a date published with the same run id and inputs'
)
PARTITIONED BY (dt STRING)
STORED AS PARQUET
