DROP TABLE IF EXISTS product_months;
DROP TABLE IF EXISTS store_months;
DROP TABLE IF EXISTS sales_days;
DROP TABLE IF EXISTS first_order_days;
DROP TABLE IF EXISTS member_first_orders;
