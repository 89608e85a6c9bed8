//! `herald simulate --from-db`: the deployment's own database copied into a
//! scratch directory ([`Snapshot`]), one copy per strategy simulated, each
//! opened as `serve` opens a database ([`open_engine`]: a strategy that
//! differs from the one the copy was planned with is planned again for
//! every customer), on a virtual clock and with plugin HTTP going to the
//! recording sink; and the period a simulation covers ([`period`]).
//!
//! Owns the scratch copies and the opening of engines on them; the copy
//! itself is `store::snapshot` (SQL lives in the store). May not touch the
//! live database beyond that read-only copy, the simulation loop's
//! internals, or the wall clock: the present comes from the command line.

use super::{AttemptSink, Summary, TimelineOp};
use crate::clock::VirtualClock;
use crate::config::Config;
use crate::engine::{Herald, OpenOptions};
use crate::plugin::http_policy::{HttpMode, RecordedRequest};
use crate::span::Span;
use crate::store::{snapshot, Location};
use anyhow::{bail, Context, Result};
use chrono::{DateTime, Duration, Months, Utc};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A consistent copy of a live database in a scratch directory (removed
/// when this is dropped).
pub struct Snapshot {
    dir: tempfile::TempDir,
    base: PathBuf,
}

impl Snapshot {
    /// Copy the database at `live` as it is now. Never writes to it.
    pub fn take(live: &Location) -> Result<Snapshot> {
        let dir = tempfile::tempdir()
            .context("cannot create a scratch directory for the copy of the database")?;
        let base = dir.path().join("snapshot.db");
        snapshot::copy_sqlite(live, &base)?;
        Ok(Snapshot { dir, base })
    }

    /// A copy of its own for one simulation, named `name` (`base`,
    /// `other`), so two strategies start from the same state.
    pub fn copy(&self, name: &str) -> Result<Location> {
        let path = self.dir.path().join(format!("{name}.db"));
        std::fs::copy(&self.base, &path).with_context(|| {
            format!(
                "cannot copy the snapshot {} to {} (is the scratch disk full?)",
                self.base.display(),
                path.display()
            )
        })?;
        Ok(Location::Embedded(path))
    }

    /// The snapshot itself, for a single simulation.
    pub fn path(&self) -> &Path {
        &self.base
    }
}

/// An engine opened for a simulation: its clock, and the HTTP requests
/// plugins made, recorded instead of sent.
pub struct Engine {
    /// The deployment on its copy of the database.
    pub herald: Herald,
    /// The virtual clock it reads.
    pub clock: VirtualClock,
    /// Requests plugins made.
    pub requests: Arc<Mutex<Vec<RecordedRequest>>>,
}

impl Engine {
    /// How many HTTP requests plugins made.
    pub fn requests_recorded(&self) -> usize {
        self.requests.lock().map(|r| r.len()).unwrap_or(0)
    }
}

/// Open `config`'s deployment on the database at `db` at `from`, plugin
/// HTTP going to the recording sink. As at any start, a strategy that is
/// new to the database is planned for every customer (at `from`).
pub async fn open_engine(config: &Config, db: Location, from: DateTime<Utc>) -> Result<Engine> {
    let clock = VirtualClock::new(from);
    let requests = Arc::new(Mutex::new(Vec::new()));
    let herald = Herald::open(
        config,
        OpenOptions {
            db: Some(db),
            clock: Arc::new(clock.clone()),
            http_mode: HttpMode::Sink(requests.clone()),
        },
    )
    .await
    .with_context(|| format!("cannot simulate {}", config.path.display()))?;
    Ok(Engine {
        herald,
        clock,
        requests,
    })
}

/// Simulate `config` from the present state of the database at `live`
/// (a copy of it) from `from` until `until`, with `ops` applied on top,
/// handing every attempt to `sink`. Returns the run's summary and how many
/// HTTP requests plugins made (recorded, never sent).
pub async fn from_db(
    config: &Config,
    live: &Location,
    (from, until): (DateTime<Utc>, DateTime<Utc>),
    ops: &[TimelineOp],
    sink: &mut AttemptSink<'_>,
) -> Result<(Summary, usize)> {
    let snapshot = Snapshot::take(live)?;
    let engine = open_engine(
        config,
        Location::Embedded(snapshot.path().to_path_buf()),
        from,
    )
    .await?;
    let summary = super::run(&engine.herald, &engine.clock, ops, until, sink).await?;
    let requests = engine.requests_recorded();
    engine.herald.store.close().await;
    Ok((summary, requests))
}

/// The period a simulation covers: from `from` (or `present` when
/// starting from the database) until `until`, or for `length` (`90d`,
/// `12w`, `3mo`: months are calendar months in UTC).
pub fn period(
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    length: Option<&str>,
    present: Option<DateTime<Utc>>,
) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let from = match (from, present) {
        (Some(from), _) => from,
        (None, Some(present)) => present,
        (None, None) => bail!("give --from (YYYY-MM-DD or RFC 3339): when the simulation starts"),
    };
    let until = match (until, length) {
        (Some(_), Some(_)) => bail!("give --until or --for, not both"),
        (Some(until), None) => until,
        (None, Some(text)) => after(from, text)?,
        (None, None) => bail!(
            "give --until (YYYY-MM-DD or RFC 3339) or --for (e.g. 90d): when the simulation ends"
        ),
    };
    if until < from {
        bail!(
            "--until ({}) is before --from ({})",
            until.to_rfc3339(),
            from.to_rfc3339()
        );
    }
    Ok((from, until))
}

/// `from` plus the span `text`.
fn after(from: DateTime<Utc>, text: &str) -> Result<DateTime<Utc>> {
    let span: Span = text
        .parse()
        .map_err(|e| anyhow::anyhow!("--for `{text}`: {e}"))?;
    if span.months < 0 || span.days < 0 || span.millis < 0 {
        bail!("--for `{text}` must not be negative");
    }
    let too_far = || anyhow::anyhow!("--for `{text}` goes past the years Herald accepts");
    let months = u32::try_from(span.months).map_err(|_| too_far())?;
    from.checked_add_months(Months::new(months))
        .and_then(|t| t.checked_add_signed(Duration::try_days(i64::from(span.days))?))
        .and_then(|t| t.checked_add_signed(Duration::try_milliseconds(span.millis)?))
        .ok_or_else(too_far)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
    }

    #[test]
    fn the_period_starts_at_from_or_the_present_and_ends_at_until_or_after_for() {
        let now = Some(t(2030, 1, 1));
        assert_eq!(
            period(None, None, Some("90d"), now).unwrap(),
            (t(2030, 1, 1), t(2030, 4, 1))
        );
        assert_eq!(
            period(Some(t(2030, 1, 31)), None, Some("1mo"), None).unwrap(),
            (t(2030, 1, 31), t(2030, 2, 28))
        );
        assert_eq!(
            period(Some(t(2030, 1, 1)), Some(t(2030, 2, 1)), None, now).unwrap(),
            (t(2030, 1, 1), t(2030, 2, 1))
        );
        let err = |r: Result<_>| r.unwrap_err().to_string();
        assert!(err(period(None, None, Some("1d"), None)).contains("--from"));
        assert!(err(period(now, now, Some("1d"), None)).contains("not both"));
        assert!(err(period(now, None, None, None)).contains("--for"));
        assert!(err(period(now, None, Some("-1d"), None)).contains("negative"));
        assert!(err(period(now, None, Some("soon"), None)).contains("--for `soon`"));
        assert!(err(period(now, Some(t(2029, 1, 1)), None, None)).contains("before"));
    }
}
