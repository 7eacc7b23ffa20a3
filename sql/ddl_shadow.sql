-- `tagger shadow` (tagger/lifecycle/shadow.py): one row per item of a day scored by the published
-- head (champion) and a candidate in the same pass. tags / tag_ids are the CANDIDATE's (the published
-- table keeps the champion's); champion_tag_ids is the champion's from the same pass. A rerun of
-- the same date and head overwrites its partition. Readers of the published table never see it.
CREATE TABLE IF NOT EXISTS IDENTIFIER(:table) (
  itemid STRING,
  dtype STRING,
  gate_score DOUBLE,
  tags ARRAY<STRUCT<tag_id: BIGINT, tag_name: STRING, tag_path: STRING, score: DOUBLE, source: STRING>>,
  tag_ids STRING COMMENT 'tag ids of the candidate cascade, comma-separated',
  champion_tag_ids STRING COMMENT 'tag ids of the published cascade in the same pass',
  champion_scores MAP<STRING, DOUBLE> COMMENT 'tag path -> score, labels of the compared heads, rows they scored',
  candidate_scores MAP<STRING, DOUBLE>,
  champion_version STRING,
  candidate_version STRING
)
PARTITIONED BY (dt STRING, head STRING)
STORED AS PARQUET
