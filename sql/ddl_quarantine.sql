-- Every source row that could not be used as it was. scope = 'item': the item is NOT in
-- item_tags for that dt (nothing of it was usable); scope = 'row': one source row was skipped
-- and the item was still tagged from what was usable.
CREATE TABLE IF NOT EXISTS IDENTIFIER(:table) (
  itemid STRING,
  source STRING COMMENT 'pool | asr | ocr',
  scope STRING COMMENT 'item | row',
  reason STRING,
  raw_excerpt STRING,
  run_id STRING
)
PARTITIONED BY (dt STRING)
STORED AS PARQUET
