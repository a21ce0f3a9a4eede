-- The product catalogue, shared by every country.
SELECT product_id, name, category, unit_price, active
FROM products
ORDER BY product_id
