-- Speech (ASR) rows that may belong to the day's videos: ASR lands up to a few days after the
-- video, so partitions dt in [run_date - :lookback_days, run_date + :late_days] are read.
-- NULL and '[]' carry nothing; everything else is parsed (and bad JSON quarantined) in normalize.
SELECT id, video_id, result_asr AS raw, dt
FROM IDENTIFIER(:asr_table)
WHERE dt >= date_format(date_sub(to_date(:run_date), :lookback_days), 'yyyy-MM-dd')
  AND dt <= date_format(date_add(to_date(:run_date), :late_days), 'yyyy-MM-dd')
  AND result_asr IS NOT NULL
  AND trim(result_asr) NOT IN ('', '[]')
