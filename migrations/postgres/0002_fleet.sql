-- What a fleet of nodes shares beyond the tables: the rate limit of each
-- rate-limited channel, as the theoretical arrival time (microseconds) of
-- its next send in a generic cell rate algorithm, so a provider's 100/s is
-- 100/s for all nodes together. Updated under its row lock by every claim
-- that sends on the channel.
CREATE TABLE channel_rates (
    channel TEXT   PRIMARY KEY,
    tat_us  BIGINT NOT NULL
);
