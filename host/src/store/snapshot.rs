//! A consistent copy of a deployment's database, for `herald simulate
//! --from-db`: the live SQLite file (with whatever its `-wal` holds) copied
//! by `VACUUM INTO` inside one read transaction, through a connection that
//! opens the live files read-only and never checkpoints or writes them. Owns
//! that copy only; the simulation opens the engine on the copy. PostgreSQL
//! deployments are refused here with what to do instead.

use super::raw::{self, Owned};
use super::Location;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Copy the database at `live` into the new file `into` as it is now: one
/// consistent state, even while `herald serve` writes to it. The live
/// database's files (the database, `-wal` and `-shm`) are not changed.
pub fn copy_sqlite(live: &Location, into: &Path) -> Result<()> {
    let source = match live {
        Location::Embedded(path) => path,
        Location::Server(_) => bail!(
            "--from-db copies a SQLite database, and {live} is PostgreSQL, which it cannot copy yet: \
             run the simulation on a SQLite copy of the deployment (its customers imported with \
             `herald import`), or over a --timeline"
        ),
    };
    if !source.is_file() {
        bail!(
            "--from-db: there is no database at {}: point --db (or [database] in the config) at the deployment's SQLite file",
            source.display()
        );
    }
    if into.exists() {
        bail!(
            "cannot copy the database into {}: the file already exists",
            into.display()
        );
    }
    let target = into
        .to_str()
        .with_context(|| format!("the scratch path {} is not UTF-8", into.display()))?;
    raw::blocking(|| {
        // First without writing a byte of the live files. A reader that may
        // not mark the `-shm` can find no read slot it may use while
        // another process writes; then as an ordinary reader, which marks
        // the `-shm` (an index, not data) and still never the database or
        // its `-wal`.
        copy_once(source, into, target, true).or_else(|first| {
            if into.exists() {
                std::fs::remove_file(into).with_context(|| {
                    format!("cannot remove the unfinished copy {}", into.display())
                })?;
            }
            copy_once(source, into, target, false).map_err(|second| {
                anyhow::anyhow!(
                    "{second:#} (before that, as a reader that leaves the -shm untouched: {first:#})"
                )
            })
        })
    })
}

/// One `VACUUM INTO` of `source` into `into` (`target`: its path as text).
fn copy_once(source: &Path, into: &Path, target: &str, untouched_shm: bool) -> Result<()> {
    let owned = Owned::open_read_only(source, untouched_shm)?;
    let conn = owned.conn();
    let mut vacuum = conn.prepare("VACUUM INTO ?1")?;
    vacuum
        .run(&[target.into()])
        .with_context(|| format!("cannot copy {} into {}", source.display(), into.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{customers, Store};

    #[tokio::test]
    async fn the_copy_holds_what_the_live_database_holds_and_the_live_files_stay_as_they_were() {
        let (dir, store) = crate::store::testing::scratch().await;
        let live = store.location().clone();
        let mut tx = store.write().await.unwrap();
        let at = chrono::DateTime::UNIX_EPOCH;
        customers::save(&mut tx, &crate::customer::Customer::new("k", at))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let hash = |p: &Path| {
            use sha2::Digest;
            std::fs::read(p)
                .ok()
                .map(|b| hex::encode(sha2::Sha256::digest(b)))
        };
        let files = |path: &Path| {
            ["", "-wal", "-shm"].map(|s| hash(Path::new(&format!("{}{s}", path.display()))))
        };
        let live_path = live.sqlite_path().unwrap().to_path_buf();
        let before = files(&live_path);
        assert!(
            before[1].is_some(),
            "the live database has a -wal while open"
        );
        let copy = dir.path().join("copy.db");
        copy_sqlite(&live, &copy).unwrap();
        // The database and its log, byte for byte. (Within one process
        // SQLite shares one `-shm` mapping between connections, so a reader
        // here marks it; tests/e2e/simulate_snapshot.rs checks all three
        // files across processes, as an operator runs it.)
        assert_eq!(files(&live_path)[..2], before[..2]);
        let copied = Store::open(&Location::Embedded(copy.clone()))
            .await
            .unwrap();
        let mut tx = copied.read().await.unwrap();
        assert!(customers::by_external_id(&mut tx, "k")
            .await
            .unwrap()
            .is_some());
        // The second way, as an ordinary reader: the database and its log
        // stay as they were too.
        let second = dir.path().join("second.db");
        copy_once(&live_path, &second, second.to_str().unwrap(), false).unwrap();
        assert_eq!(files(&live_path)[..2], before[..2]);
        let err = copy_sqlite(&live, &copy).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
        let pg = Location::Server("postgres://u:secret@h/db".into());
        let err = copy_sqlite(&pg, &dir.path().join("x.db"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PostgreSQL") && !err.contains("secret"),
            "{err}"
        );
    }
}
