//! A consistent copy of a deployment's database, for `herald simulate
//! --from-db`: the live SQLite file, with whatever its `-wal` holds, copied
//! by `VACUUM INTO` inside one read transaction, without changing a byte of
//! the live files (the database, its `-wal` and its `-shm`) and without
//! creating any. Owns that copy only; the simulation opens the engine on
//! the copy. PostgreSQL deployments are refused here with what to do
//! instead.
//!
//! Three ways, tried in turn:
//! - No `-shm`: no process has the database open (an open database in WAL
//!   mode keeps its `-shm`), so its files are copied as bytes into the
//!   scratch directory and that copy, ours to open as we like, is vacuumed
//!   into the target. Opening the live file instead would create a `-wal`
//!   and a `-shm` beside it. When the files changed meanwhile (a process
//!   opened the database), the next way is taken.
//! - A reader that opens the live files read-only, never checkpoints, and
//!   reads the `-shm` without writing it (`readonly_shm`).
//! - When that reader finds no read slot it may use (another process is
//!   writing), an ordinary read-only reader, which marks the `-shm` (an
//!   index, not data) as readers do, and still never writes the database
//!   or its `-wal`.

use super::raw::{self, Owned};
use super::Location;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// How [`copy_once`] opens the database it copies.
#[derive(Clone, Copy)]
enum Reader {
    /// Read and write: a private byte copy of the live files.
    Private,
    /// Read-only, the `-shm` never written.
    Untouched,
    /// Read-only, an ordinary reader of the `-shm`.
    Ordinary,
}

/// Copy the database at `live` into the new file `into` as it is now: one
/// consistent state, even while `herald serve` writes to it. The live
/// database's files (the database, `-wal` and `-shm`) are not changed, and
/// none is created.
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
        if !sibling(source, "-shm").exists() && copy_closed(source, into, target)? {
            return Ok(());
        }
        copy_once(source, into, target, Reader::Untouched).or_else(|first| {
            remove(into)?;
            copy_once(source, into, target, Reader::Ordinary).map_err(|second| {
                anyhow::anyhow!(
                    "{second:#} (before that, as a reader that leaves the -shm untouched: {first:#})"
                )
            })
        })
    })
}

/// `path` with `suffix` appended to its name (`-wal`, `-shm`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Length and modification time of the database, its `-wal` and its `-shm`.
type Stamps = [Option<(u64, SystemTime)>; 3];

fn stamps(path: &Path) -> Stamps {
    ["", "-wal", "-shm"].map(|suffix| {
        std::fs::metadata(sibling(path, suffix))
            .ok()
            .and_then(|m| Some((m.len(), m.modified().ok()?)))
    })
}

/// Copy a database no process has open: its files as bytes into the
/// scratch directory beside `into`, then that private copy vacuumed into
/// `into`. False (nothing left behind) when the live files changed
/// meanwhile.
fn copy_closed(source: &Path, into: &Path, target: &str) -> Result<bool> {
    let before = stamps(source);
    let stage = sibling(into, ".stage");
    let staged = (|| -> Result<()> {
        std::fs::copy(source, &stage)
            .with_context(|| format!("cannot copy {} to {}", source.display(), stage.display()))?;
        let wal = sibling(source, "-wal");
        if wal.exists() {
            let to = sibling(&stage, "-wal");
            std::fs::copy(&wal, &to)
                .with_context(|| format!("cannot copy {} to {}", wal.display(), to.display()))?;
        }
        Ok(())
    })();
    let unchanged = stamps(source) == before && before[2].is_none();
    let result = match staged {
        Ok(()) if unchanged => {
            let stage_text = stage.to_string_lossy().into_owned();
            copy_once(Path::new(&stage_text), into, target, Reader::Private).map(|()| true)
        }
        Ok(()) => Ok(false),
        Err(e) => Err(e),
    };
    for suffix in ["", "-wal", "-shm"] {
        remove(&sibling(&stage, suffix))?;
    }
    if !matches!(result, Ok(true)) {
        remove(into)?;
    }
    result
}

/// Remove `path` if it is there (an unfinished copy).
fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// One `VACUUM INTO` of `source` into `into` (`target`: its path as text).
fn copy_once(source: &Path, into: &Path, target: &str, reader: Reader) -> Result<()> {
    let owned = match reader {
        Reader::Private => Owned::open(source)?,
        Reader::Untouched => Owned::open_read_only(source, true)?,
        Reader::Ordinary => Owned::open_read_only(source, false)?,
    };
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

    /// SHA-256 of the database, its `-wal` and its `-shm` (None: absent).
    fn files(path: &Path) -> [Option<String>; 3] {
        use sha2::Digest;
        ["", "-wal", "-shm"].map(|suffix| {
            std::fs::read(sibling(path, suffix))
                .ok()
                .map(|b| hex::encode(sha2::Sha256::digest(b)))
        })
    }

    async fn has_k(path: &Path) -> bool {
        let store = Store::open(&Location::Embedded(path.to_path_buf()))
            .await
            .unwrap();
        let mut tx = store.read().await.unwrap();
        let found = customers::by_external_id(&mut tx, "k")
            .await
            .unwrap()
            .is_some();
        drop(tx);
        store.close().await;
        found
    }

    /// A scratch database holding customer `k`, still open.
    async fn with_k() -> (tempfile::TempDir, Store) {
        let (dir, store) = crate::store::testing::scratch().await;
        let mut tx = store.write().await.unwrap();
        let at = chrono::DateTime::UNIX_EPOCH;
        customers::save(&mut tx, &crate::customer::Customer::new("k", at))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn a_database_no_process_has_open_is_copied_without_creating_files_beside_it() {
        let (dir, store) = with_k().await;
        let live_path = store.sqlite_path().unwrap().to_path_buf();
        // A -wal left without its -shm (a process that exited while
        // closing its database).
        let left = dir.path().join("left.db");
        std::fs::copy(&live_path, &left).unwrap();
        std::fs::copy(sibling(&live_path, "-wal"), sibling(&left, "-wal")).unwrap();
        let before = files(&left);
        assert!(before[1].is_some() && before[2].is_none(), "{before:?}");
        let copy = dir.path().join("c1.db");
        copy_sqlite(&Location::Embedded(left.clone()), &copy).unwrap();
        assert_eq!(files(&left), before);
        assert!(has_k(&copy).await);
        // Closed cleanly: the database file alone.
        store.close().await;
        let before = files(&live_path);
        assert!(before[1].is_none() && before[2].is_none(), "{before:?}");
        let copy = dir.path().join("c2.db");
        copy_sqlite(store.location(), &copy).unwrap();
        assert_eq!(files(&live_path), before);
        assert!(has_k(&copy).await);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("stage"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[tokio::test]
    async fn the_copy_holds_what_the_live_database_holds_and_the_live_files_stay_as_they_were() {
        let (dir, store) = with_k().await;
        let live = store.location().clone();
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
        assert!(has_k(&copy).await);
        // The second way, as an ordinary reader: the database and its log
        // stay as they were too.
        let second = dir.path().join("second.db");
        copy_once(
            &live_path,
            &second,
            second.to_str().unwrap(),
            Reader::Ordinary,
        )
        .unwrap();
        assert_eq!(files(&live_path)[..2], before[..2]);
        assert!(has_k(&second).await);
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
