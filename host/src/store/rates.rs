//! The `channel_rates` table (PostgreSQL only): one rate-limit state per
//! channel, shared by every node of a fleet, so a provider's 100/s holds
//! for all nodes together. A node asks for as many sends as its batch has
//! for the channel and is granted those whose slot has come (the same
//! generic cell rate algorithm as the in-process limiter, with the state in
//! the row, updated under its lock). On SQLite the one scheduler keeps the
//! state in memory and this table does not exist.

use super::{On, Store};
use anyhow::{Context, Result};
use chrono::{DateTime, TimeZone, Utc};

/// What a node may send on a channel now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Sends that may go now.
    pub granted: u32,
    /// When the first send beyond those may go (later ones one interval
    /// apart).
    pub next_slot: DateTime<Utc>,
}

/// The channel's rule: one send per `interval_us`, bursts of `burst`.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Microseconds between sends at the steady rate.
    pub interval_us: i64,
    /// Sends allowed at once after a quiet spell (at least 1).
    pub burst: u32,
}

/// Take up to `wanted` sends on `channel` at `now` from the fleet's shared
/// limit; `None` on SQLite (use the in-process limiter).
pub async fn take(
    store: &Store,
    channel: &str,
    wanted: u32,
    limit: Limit,
    now: DateTime<Utc>,
) -> Result<Option<Grant>> {
    let On::Postgres(pool) = store.pool() else {
        return Ok(None);
    };
    let now_us = now.timestamp_micros();
    let tolerance_us = limit
        .interval_us
        .saturating_mul(i64::from(limit.burst.max(1)) - 1);
    // The channel's row exists after its first tick: one statement per
    // tick then; the insert runs only the first time.
    let taken = match take_from_row(pool, channel, wanted, limit, now_us, tolerance_us).await? {
        Some(taken) => taken,
        None => {
            sqlx::query(
                "INSERT INTO channel_rates (channel, tat_us) VALUES ($1, 0) ON CONFLICT (channel) DO NOTHING",
            )
            .bind(channel)
            .execute(pool)
            .await
            .with_context(|| format!("cannot set up the shared rate limit of channel {channel}"))?;
            take_from_row(pool, channel, wanted, limit, now_us, tolerance_us)
                .await?
                .with_context(|| format!("the shared rate limit of channel {channel} vanished"))?
        }
    };
    let (granted, next_us) = taken;
    let next_slot = Utc
        .timestamp_micros(next_us.saturating_sub(tolerance_us))
        .single()
        .unwrap_or(now);
    Ok(Some(Grant {
        granted: u32::try_from(granted).unwrap_or(0),
        next_slot,
    }))
}

/// The GCRA step on the channel's row, under its lock: `(granted, the
/// state after)`, or `None` when the channel has no row yet. A state more
/// than `burst` intervals ahead of `now` is left from a clock that went
/// back (a node's, before the skew check stopped it) and is brought back.
async fn take_from_row(
    pool: &sqlx::PgPool,
    channel: &str,
    wanted: u32,
    limit: Limit,
    now_us: i64,
    tolerance_us: i64,
) -> Result<Option<(i64, i64)>> {
    sqlx::query_as(
        "WITH cur AS (SELECT LEAST(GREATEST(tat_us, $2), $2 + $4 + $5) AS start
                      FROM channel_rates WHERE channel = $1 FOR UPDATE),
              g AS (SELECT start,
                           LEAST($3, GREATEST(0, floor(($2 + $4 - start)::numeric / $5)::bigint + 1)) AS granted
                    FROM cur)
         UPDATE channel_rates AS c SET tat_us = g.start + g.granted * $5 FROM g WHERE c.channel = $1
         RETURNING g.granted, g.start + g.granted * $5",
    )
    .bind(channel)
    .bind(now_us)
    .bind(i64::from(wanted))
    .bind(tolerance_us)
    .bind(limit.interval_us)
    .fetch_optional(pool)
    .await
    .with_context(|| format!("cannot take sends from the shared rate limit of channel {channel}"))
}
