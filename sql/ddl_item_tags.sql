-- One row per selected item and day, tagged or not (docs/domain.md invariant).
-- run_id is deterministic: dt + a digest of model versions, rules version and config, so a
-- rerun with the same inputs rewrites identical rows.
CREATE TABLE IF NOT EXISTS IDENTIFIER(:table) (
  itemid STRING,
  dtype STRING,
  gate_score DOUBLE,
  tags ARRAY<STRUCT<tag_id: BIGINT, tag_name: STRING, tag_path: STRING, score: DOUBLE, source: STRING>>,
  tag_ids STRING COMMENT 'comma-separated tag ids, for Hive consumers',
  model_version STRING,
  rules_version STRING,
  run_id STRING
)
PARTITIONED BY (dt STRING)
STORED AS PARQUET
