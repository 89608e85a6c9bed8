-- When a claimed reminder's send began (set just before the plugin is
-- called, cleared by the next claim). A row whose claim ran out with this
-- set may have reached the provider: a node died between send and record.
-- The next claim treats it as in doubt (it counts towards the customer's
-- frequency caps); one whose send never began is simply decided again.
ALTER TABLE schedule ADD COLUMN send_started_at BIGINT;
