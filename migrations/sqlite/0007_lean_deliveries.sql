-- Every delivery row was written to five b-trees: the table and four
-- indexes. deliveries_customer (customer_id, at) is covered by
-- deliveries_customer_rule (customer_id, rule_id, at) for every query that
-- looks a customer's deliveries up (the recent sends of a batch of customers
-- for the frequency caps, goal attribution); dropping it makes each recorded
-- attempt one index cheaper (see docs/performance.md).
DROP INDEX IF EXISTS deliveries_customer;
