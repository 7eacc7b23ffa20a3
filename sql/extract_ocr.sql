-- On-screen text (OCR) rows, same window and rules as extract_asr.sql.
SELECT id, video_id, ocr_info AS raw, dt
FROM IDENTIFIER(:ocr_table)
WHERE dt >= date_format(date_sub(to_date(:run_date), :lookback_days), 'yyyy-MM-dd')
  AND dt <= date_format(date_add(to_date(:run_date), :late_days), 'yyyy-MM-dd')
  AND ocr_info IS NOT NULL
  AND trim(ocr_info) NOT IN ('', '[]')
