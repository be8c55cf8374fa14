-- Every Audience Studio activation of activate_to_krux in one result, as the seed asks of a
-- query: user_id first and td_segment second (both strings); any further column is an attribute.
SELECT KUID AS user_id, segment_name AS td_segment, '${session_date}' AS exported_on
FROM activate_to_krux.segment_high_value
UNION ALL
SELECT KUID, segment_name, '${session_date}'
FROM activate_to_krux.segment_churn_risk
WHERE ${min_rows} > 0
