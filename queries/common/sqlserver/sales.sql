-- Sales of the country from the operational SQL Server database (T-SQL).
-- Values are bound as parameters (sp_executesql), never pasted into the text.
SELECT
    s.SaleID     AS sale_id,
    s.SaleDate   AS sale_date,
    s.RegionCode AS region,
    s.ProductID  AS product_id,
    s.Quantity   AS quantity,
    s.Amount     AS amount
FROM dbo.Sales AS s
WHERE s.CountryCode = {{ country_code | bind }}
  AND s.SaleDate >= {{ start_date | bind }}
