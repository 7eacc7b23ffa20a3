-- Active content tags from the newest tag-dimension snapshot on or before the run date.
SELECT id, tag_name, tag_path, tag_path_name
FROM IDENTIFIER(:tag_dim_table)
WHERE dt = (SELECT max(dt) FROM IDENTIFIER(:tag_dim_table) WHERE dt <= :run_date)
  AND tag_type_name = '内容标签'
  AND status = 1
  AND id IS NOT NULL
  AND tag_path_name IS NOT NULL
