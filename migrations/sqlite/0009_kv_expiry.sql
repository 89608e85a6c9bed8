-- Expired plugin keys are dropped before each write of their channel
-- (a replay cache leaves one short-lived key per callback).
CREATE INDEX plugin_kv_expiry ON plugin_kv (namespace, expires_at) WHERE expires_at IS NOT NULL;
