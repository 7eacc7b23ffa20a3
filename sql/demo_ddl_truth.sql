-- True labels of the demo items (tag path names), for training and evaluation only.
CREATE TABLE IF NOT EXISTS IDENTIFIER(:table) (
  itemid STRING, labels ARRAY<STRING>, ambiguous BOOLEAN, mislabelled BOOLEAN
)
PARTITIONED BY (pt STRING)
STORED AS PARQUET
