-- Every change of what readers see: publish (audits passed or warned), override (a refused
-- version published by hand with a reason), rollback, repair (a crash between the two tables'
-- switches, mended). Appended.
CREATE TABLE IF NOT EXISTS IDENTIFIER(:table) (
  version STRING,
  previous_version STRING,
  action STRING COMMENT 'publish | override | rollback | repair',
  actor STRING,
  reason STRING,
  at STRING
)
PARTITIONED BY (dt STRING)
STORED AS PARQUET
