-- One row per run attempt (appended; a rerun adds a row).
CREATE TABLE IF NOT EXISTS IDENTIFIER(:table) (
  run_id STRING,
  started_at STRING,
  seconds DOUBLE,
  items_selected BIGINT,
  items_tagged BIGINT,
  items_with_tags BIGINT,
  items_quarantined BIGINT,
  quarantine_rows BIGINT,
  tag_counts MAP<STRING, BIGINT>,
  quarantine_reasons MAP<STRING, BIGINT>,
  stage_seconds MAP<STRING, DOUBLE>,
  model_version STRING,
  rules_version STRING,
  model_loads BIGINT COMMENT 'heads loaded, summed over Python workers (once per worker when healthy)',
  python_workers BIGINT COMMENT 'distinct Python worker processes in the tag stage',
  implied_parents BIGINT COMMENT 'parent tags added because a child tag came without its parent (source hierarchy)',
  version STRING COMMENT 'the staged version (write-audit-publish)',
  outcome STRING COMMENT 'passed | warned | refused (by the audits)',
  worker_devices MAP<STRING, STRING> COMMENT 'host:pid of each Python worker -> its torch device and Spark GPU addresses'
)
PARTITIONED BY (dt STRING)
STORED AS PARQUET
