-- Sales of the country's regions since the start date.
SELECT
    s.sale_id,
    s.sale_date,
    r.name AS region,
    s.product_id,
    s.quantity,
    s.amount,
    s.created_at
FROM sales AS s
JOIN regions AS r ON r.region_id = s.region_id
WHERE r.country = {{ country | bind }}
  AND s.sale_date >= {{ start_date | bind }}
ORDER BY s.sale_id
