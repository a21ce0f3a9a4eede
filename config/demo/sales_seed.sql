-- Sample sales database for the demo pipeline. Deterministic: no random(), no clock.
-- Used by the `seed:` of the demo's sqlite sources when output/demo/sales.db does not exist.
CREATE TABLE regions (
    region_id INTEGER PRIMARY KEY,
    country   TEXT NOT NULL,
    name      TEXT NOT NULL
);
INSERT INTO regions VALUES
    (1, 'colombia', 'Bogotá D.C.'),
    (2, 'colombia', 'Antioquia'),
    (3, 'colombia', 'Valle del Cauca'),
    (4, 'mexico',   'Ciudad de México'),
    (5, 'mexico',   'Jalisco'),
    (6, 'mexico',   'Nuevo León');

CREATE TABLE products (
    product_id INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    category   TEXT NOT NULL,
    unit_price DECIMAL(12, 2) NOT NULL,
    active     BOOLEAN NOT NULL
);
INSERT INTO products VALUES
    (1, 'Café molido 500g',   'Bebidas',   '18.90', 1),
    (2, 'Agua mineral 1.5L',  'Bebidas',   '2.35',  1),
    (3, 'Arroz 1kg',          'Despensa',  '4.10',  1),
    (4, 'Aceite vegetal 1L',  'Despensa',  '7.45',  1),
    (5, 'Detergente 2kg',     'Limpieza',  '11.20', 1),
    (6, 'Jabón de baño x3',   'Limpieza',  '5.60',  0),
    (7, 'Galletas surtidas',  'Snacks',    '3.25',  1),
    (8, 'Papas fritas 150g',  'Snacks',    '2.80',  1);

CREATE TABLE sales (
    sale_id    INTEGER PRIMARY KEY,
    sale_date  DATE NOT NULL,
    region_id  INTEGER NOT NULL REFERENCES regions (region_id),
    product_id INTEGER NOT NULL REFERENCES products (product_id),
    quantity   INTEGER NOT NULL,
    amount     DECIMAL(14, 2) NOT NULL,
    created_at DATETIME NOT NULL
);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 6000)
INSERT INTO sales
SELECT
    n.i,
    date('2024-01-01', '+' || (n.i % 366) || ' days'),
    1 + (n.i * 7) % 6,
    p.product_id,
    1 + (n.i * 31) % 9,
    printf('%.2f', (1 + (n.i * 31) % 9) * CAST(p.unit_price AS REAL)),
    datetime('2024-01-01 08:00:00', '+' || (n.i * 37) || ' minutes')
FROM n
JOIN products p ON p.product_id = 1 + (n.i * 13) % 8;
