//! The `tracking_events` table: every open and click a tracking token
//! brought in, recorded against the delivery the token names.

use super::backend::on;
use super::{to_millis, Store};
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

/// An open or a click.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The open pixel was loaded.
    Open,
    /// A tracked link was followed.
    Click,
}

impl Kind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Open => "open",
            Kind::Click => "click",
        }
    }
}

/// One hit to record.
#[derive(Debug, Clone)]
pub struct Hit<'a> {
    /// Open or click.
    pub kind: Kind,
    /// The schedule row the token names.
    pub schedule_id: i64,
    /// The attempt the token names.
    pub attempt: i64,
    /// For a click: the link's position and URL.
    pub link: Option<(i64, &'a str)>,
    /// The requesting client, if it said (truncated).
    pub user_agent: Option<&'a str>,
    /// When.
    pub at: DateTime<Utc>,
}

/// Record a hit against the attempt's delivery row (the delivered one when
/// there is one). Returns the delivery id, or `None` when no such delivery
/// exists (a link from `herald preview`, or a message not recorded yet), in
/// which case nothing is stored.
pub async fn record_hit(store: &Store, hit: &Hit<'_>) -> Result<Option<i64>> {
    on!(store.pool(), |db, d| {
        let user_agent = hit
            .user_agent
            .map(|ua| ua.chars().take(256).collect::<String>());
        let row: Option<(i64,)> = sqlx::query_as(&d.sql(
            "INSERT INTO tracking_events (delivery_id, kind, link, url, user_agent, at)
         SELECT id, ?3, ?4, ?5, ?6, ?7 FROM deliveries
         WHERE schedule_id = ?1 AND attempt = ?2 AND status NOT IN ('deferred', 'skipped')
         ORDER BY status = 'delivered' DESC, id DESC LIMIT 1
         RETURNING delivery_id",
        ))
        .bind(hit.schedule_id)
        .bind(hit.attempt)
        .bind(hit.kind.as_str())
        .bind(hit.link.map(|(i, _)| i))
        .bind(hit.link.map(|(_, url)| url))
        .bind(user_agent)
        .bind(to_millis(hit.at))
        .fetch_optional(db)
        .await
        .with_context(|| {
            format!(
                "cannot record the {} of schedule row {} attempt {}",
                hit.kind.as_str(),
                hit.schedule_id,
                hit.attempt
            )
        })?;
        Ok(row.map(|(id,)| id))
    })
}
