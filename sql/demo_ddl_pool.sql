-- Demo copy of the production pool table (docs/domain.md), created by `tagger seed` only.
CREATE TABLE IF NOT EXISTS IDENTIFIER(:table) (
  itemid STRING, title STRING, summary STRING, relate_app_tag_id STRING, dtype STRING,
  recommend_grade STRING, gc STRING, create_time STRING
)
PARTITIONED BY (pt STRING)
STORED AS PARQUET
