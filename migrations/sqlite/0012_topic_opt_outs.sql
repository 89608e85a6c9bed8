-- The topics a customer turned off on the preference page or through the
-- API (`[topics]` of the strategy). A customer is on every topic unless a
-- row here says otherwise; transactional rules ignore it.
CREATE TABLE topic_opt_outs (
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    topic       TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (customer_id, topic)
);
