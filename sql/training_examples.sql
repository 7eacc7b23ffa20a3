-- Labelled training examples: the job's own doc_text (view :items_view) joined with true labels.
SELECT i.itemid, i.doc_text, t.labels
FROM IDENTIFIER(:items_view) i
JOIN IDENTIFIER(:truth_table) t ON t.itemid = i.itemid AND t.pt = :run_date
