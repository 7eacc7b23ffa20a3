-- `tagger shadow`: per date, head and compared tag, the champion's and the candidate's rates over the
-- same items, their agreement, and the items they disagree on most (for review).
CREATE TABLE IF NOT EXISTS IDENTIFIER(:table) (
  tag_id BIGINT,
  tag_path STRING,
  source_head STRING COMMENT 'the head whose label this is',
  items BIGINT COMMENT 'items scored',
  champion_items BIGINT,
  candidate_items BIGINT,
  champion_rate DOUBLE COMMENT 'champion_items / items',
  candidate_rate DOUBLE,
  both_items BIGINT,
  either_items BIGINT,
  agreement DOUBLE COMMENT 'both_items / either_items; NULL when neither tagged an item',
  disagreements ARRAY<STRUCT<rank: INT, itemid: STRING, excerpt: STRING, champion_score: DOUBLE, candidate_score: DOUBLE,
                              tagged_by: STRING>>
    COMMENT 'largest score difference first, then flipped decisions; tagged_by: both, champion, candidate, neither',
  champion_version STRING,
  candidate_version STRING,
  shadow_at STRING COMMENT 'when the shadow run started (UTC, ISO)'
)
PARTITIONED BY (dt STRING, head STRING)
STORED AS PARQUET
