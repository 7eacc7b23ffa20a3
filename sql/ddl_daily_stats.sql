-- Per date and staged version: one row per emitted tag, plus one row with tag_path '<none>' for
-- the items with no tag. The next days' audits read this table, so drift needs no rescan of old
-- partitions; `tagger report` draws it.
CREATE TABLE IF NOT EXISTS IDENTIFIER(:table) (
  version STRING,
  tag_id BIGINT,
  tag_path STRING,
  items BIGINT COMMENT 'items carrying the tag',
  rate DOUBLE COMMENT 'items / items_tagged',
  source_counts MAP<STRING, BIGINT> COMMENT 'items per source: rule, gate, p0, p1, hierarchy',
  items_selected BIGINT,
  items_tagged BIGINT,
  coverage DOUBLE COMMENT 'share of tagged items with at least one tag',
  gate_pass_rate DOUBLE COMMENT 'share of tagged items the gate passed',
  quarantine_reasons MAP<STRING, BIGINT>
)
PARTITIONED BY (dt STRING)
STORED AS PARQUET
