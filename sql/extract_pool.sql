-- Articles and videos of one day, with the team's extract filter (docs/domain.md).
-- Bound parameters: :pool_table (db.table), :run_date (yyyy-MM-dd).
-- No DISTINCT here: duplicates are resolved (and conflicting ones quarantined) in normalize.
SELECT itemid, title, summary, relate_app_tag_id, dtype, recommend_grade, gc, create_time
FROM IDENTIFIER(:pool_table)
WHERE dtype IN ('news', 'yichehao_news', 'yichehao_video')
  AND recommend_grade != 'Z'
  AND gc NOT IN ('AGC-XIAOYI', 'AGC-XIAOSHA')   -- machine-generated content is excluded
  AND pt = :run_date
  AND create_time >= :run_date
