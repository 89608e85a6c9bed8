//! Statements run straight through SQLite's C API, for the few places where
//! the driver's per-row cost outweighs SQLite's own: the tick's batched
//! writes, and the floor `herald bench` measures them against.
//!
//! sqlx runs every connection on a thread of its own and hands each statement
//! and its bound values over a channel (copying them); for a tick that writes
//! four rows per reminder this cost more than the b-tree work itself (see
//! docs/performance.md). Here a connection sqlx has locked
//! ([`sqlx::SqliteConnection::lock_handle`]) is used directly, on the calling
//! thread, inside the caller's transaction: one prepared statement per kind of
//! write, bound and stepped once per row.

use anyhow::{bail, Result};
use libsqlite3_sys as ffi;
use std::ffi::{c_int, CStr, CString};
use std::marker::PhantomData;
use std::ptr::NonNull;

/// A connection handle, borrowed for `'c` (from a locked sqlx connection or
/// an [`Owned`] one).
#[derive(Clone, Copy)]
pub struct Conn<'c> {
    raw: NonNull<ffi::sqlite3>,
    _borrow: PhantomData<&'c mut ()>,
}

impl<'c> Conn<'c> {
    /// Use `raw` as a connection for `'c`.
    ///
    /// # Safety
    /// `raw` must be an open SQLite connection that stays open and is used by
    /// no one else for `'c` (as a [`sqlx::sqlite::LockedSqliteHandle`]
    /// guarantees while it lives).
    pub unsafe fn new(raw: NonNull<ffi::sqlite3>) -> Conn<'c> {
        Conn {
            raw,
            _borrow: PhantomData,
        }
    }

    /// SQLite's message for the last error on this connection.
    pub fn errmsg(&self) -> String {
        // SAFETY: a live connection; sqlite3_errmsg returns a string it owns.
        unsafe {
            CStr::from_ptr(ffi::sqlite3_errmsg(self.raw.as_ptr()))
                .to_string_lossy()
                .into_owned()
        }
    }

    /// Run statements that return no rows (`BEGIN`, pragmas, …).
    pub fn exec(&self, sql: &str) -> Result<()> {
        let text = CString::new(sql)?;
        // SAFETY: a live connection and a NUL-terminated statement list.
        let rc = unsafe {
            ffi::sqlite3_exec(
                self.raw.as_ptr(),
                text.as_ptr(),
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            bail!("`{sql}` failed: {}", self.errmsg());
        }
        Ok(())
    }

    /// Prepare one statement.
    pub fn prepare(&self, sql: &str) -> Result<Stmt<'c>> {
        let text = CString::new(sql)?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: a live connection and a NUL-terminated statement.
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(
                self.raw.as_ptr(),
                text.as_ptr(),
                -1,
                &mut raw,
                std::ptr::null_mut(),
            )
        };
        match NonNull::new(raw) {
            Some(raw) if rc == ffi::SQLITE_OK => Ok(Stmt { conn: *self, raw }),
            _ => bail!(
                "cannot prepare `{}`: {}",
                sql.split_whitespace().collect::<Vec<_>>().join(" "),
                self.errmsg()
            ),
        }
    }
}

/// A connection this process opened itself, closed on drop.
pub struct Owned(NonNull<ffi::sqlite3>);

impl Owned {
    /// Open an existing database file for reading and writing.
    pub fn open(path: &std::path::Path) -> Result<Owned> {
        let name = CString::new(path.to_string_lossy().as_bytes())?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: `name` is NUL-terminated; `raw` receives the handle.
        let rc = unsafe {
            ffi::sqlite3_open_v2(
                name.as_ptr(),
                &mut raw,
                ffi::SQLITE_OPEN_READWRITE,
                std::ptr::null(),
            )
        };
        let Some(handle) = NonNull::new(raw) else {
            bail!("cannot open {}: out of memory", path.display());
        };
        let owned = Owned(handle);
        if rc != ffi::SQLITE_OK {
            bail!("cannot open {}: {}", path.display(), owned.conn().errmsg());
        }
        Ok(owned)
    }

    /// Open an existing database file for reading only: never a checkpoint
    /// when it closes, so neither the database nor its `-wal` changes. With
    /// `untouched_shm` its `-shm` index is read and never written either
    /// (`readonly_shm`: without another connection SQLite reads the `-wal`
    /// itself into memory); without it a reader may mark the `-shm` as
    /// readers do. What a snapshot of a live database needs.
    pub fn open_read_only(path: &std::path::Path, untouched_shm: bool) -> Result<Owned> {
        let name = CString::new(format!(
            "file:{}?mode=ro{}",
            uri_path(&path.to_string_lossy()),
            if untouched_shm { "&readonly_shm=1" } else { "" }
        ))?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: `name` is NUL-terminated; `raw` receives the handle.
        let rc = unsafe {
            ffi::sqlite3_open_v2(
                name.as_ptr(),
                &mut raw,
                ffi::SQLITE_OPEN_READONLY | ffi::SQLITE_OPEN_URI,
                std::ptr::null(),
            )
        };
        let Some(handle) = NonNull::new(raw) else {
            bail!("cannot open {}: out of memory", path.display());
        };
        let owned = Owned(handle);
        if rc != ffi::SQLITE_OK {
            bail!(
                "cannot open {} read-only: {}",
                path.display(),
                owned.conn().errmsg()
            );
        }
        // SAFETY: a live connection; this option takes an int and an
        // optional int pointer.
        let rc = unsafe {
            ffi::sqlite3_db_config(
                handle.as_ptr(),
                ffi::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                1 as c_int,
                std::ptr::null_mut::<c_int>(),
            )
        };
        if rc != ffi::SQLITE_OK {
            bail!(
                "cannot keep {} from being checkpointed: {}",
                path.display(),
                owned.conn().errmsg()
            );
        }
        Ok(owned)
    }

    /// The connection, for as long as this value lives.
    pub fn conn(&self) -> Conn<'_> {
        // SAFETY: opened by `Owned::open` and closed only when `self` drops,
        // which the borrow of `self` outlives.
        unsafe { Conn::new(self.0) }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: opened by `Owned::open`; statements borrow the connection,
        // so all of them were finalized before this runs.
        unsafe { ffi::sqlite3_close(self.0.as_ptr()) };
    }
}

/// `path` as the path of a `file:` URI: the characters a URI gives a
/// meaning to (`%`, `?`, `#`) percent-encoded.
fn uri_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

/// A value bound to a statement parameter.
#[derive(Clone, Copy, Debug)]
pub enum Value<'a> {
    /// `NULL`.
    Null,
    /// An integer.
    Int(i64),
    /// Text.
    Text(&'a str),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(v)
    }
}

impl<'a, T: Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// A prepared statement, finalized on drop.
pub struct Stmt<'c> {
    conn: Conn<'c>,
    raw: NonNull<ffi::sqlite3_stmt>,
}

impl Drop for Stmt<'_> {
    fn drop(&mut self) {
        // SAFETY: prepared by `Conn::prepare` and finalized only here.
        unsafe { ffi::sqlite3_finalize(self.raw.as_ptr()) };
    }
}

impl<'c> Stmt<'c> {
    fn bind(&mut self, values: &[Value<'_>]) -> Result<()> {
        let stmt = self.raw.as_ptr();
        for (i, v) in values.iter().enumerate() {
            let n = i as c_int + 1;
            // SAFETY: a live statement; SQLITE_TRANSIENT makes SQLite copy
            // the text before the call returns.
            let rc = unsafe {
                match v {
                    Value::Null => ffi::sqlite3_bind_null(stmt, n),
                    Value::Int(x) => ffi::sqlite3_bind_int64(stmt, n, *x),
                    Value::Text(s) => ffi::sqlite3_bind_text(
                        stmt,
                        n,
                        s.as_ptr().cast(),
                        c_int::try_from(s.len())?,
                        ffi::SQLITE_TRANSIENT(),
                    ),
                }
            };
            if rc != ffi::SQLITE_OK {
                bail!("cannot bind parameter {n}: {}", self.conn.errmsg());
            }
        }
        Ok(())
    }

    /// Bind `values` to parameters 1.., run the statement (it returns no
    /// rows) and reset it; returns the rows it changed.
    pub fn run(&mut self, values: &[Value<'_>]) -> Result<u64> {
        self.bind(values)?;
        // SAFETY: a live, bound statement.
        let rc = unsafe { ffi::sqlite3_step(self.raw.as_ptr()) };
        // SAFETY: as above.
        unsafe { ffi::sqlite3_reset(self.raw.as_ptr()) };
        if rc != ffi::SQLITE_DONE {
            bail!("{}", self.conn.errmsg());
        }
        // SAFETY: a live connection.
        Ok(unsafe { ffi::sqlite3_changes64(self.conn.raw.as_ptr()) } as u64)
    }

    /// Bind `values` and start a query; read its rows with [`Rows::step`].
    pub fn query(&mut self, values: &[Value<'_>]) -> Result<Rows<'_, 'c>> {
        // SAFETY: a live statement; a fresh query starts from the top.
        unsafe { ffi::sqlite3_reset(self.raw.as_ptr()) };
        self.bind(values)?;
        Ok(Rows { stmt: self })
    }
}

/// The rows of a running query; the statement is reset when this is dropped.
pub struct Rows<'s, 'c> {
    stmt: &'s mut Stmt<'c>,
}

impl Drop for Rows<'_, '_> {
    fn drop(&mut self) {
        // SAFETY: a live statement.
        unsafe { ffi::sqlite3_reset(self.stmt.raw.as_ptr()) };
    }
}

impl Rows<'_, '_> {
    /// Step to the next row; false when there are no more.
    pub fn step(&mut self) -> Result<bool> {
        // SAFETY: a live, bound statement.
        match unsafe { ffi::sqlite3_step(self.stmt.raw.as_ptr()) } {
            ffi::SQLITE_ROW => Ok(true),
            ffi::SQLITE_DONE => Ok(false),
            _ => bail!("{}", self.stmt.conn.errmsg()),
        }
    }

    /// Column `col` of the current row as an integer.
    pub fn int(&self, col: c_int) -> i64 {
        // SAFETY: on a row (after `step` returned true).
        unsafe { ffi::sqlite3_column_int64(self.stmt.raw.as_ptr(), col) }
    }

    /// Column `col` of the current row as text (`None` for NULL).
    pub fn text(&self, col: c_int) -> Option<String> {
        // SAFETY: on a row; the pointer (or null) is valid until the next step.
        unsafe {
            let p = ffi::sqlite3_column_text(self.stmt.raw.as_ptr(), col);
            if p.is_null() {
                return None;
            }
            let len = ffi::sqlite3_column_bytes(self.stmt.raw.as_ptr(), col);
            let bytes = std::slice::from_raw_parts(p, usize::try_from(len).unwrap_or(0));
            Some(String::from_utf8_lossy(bytes).into_owned())
        }
    }
}

/// Run `f` on the current thread where it may block for a while: under a
/// multi-threaded tokio runtime the worker hands its other tasks to the rest
/// of the pool first (`block_in_place`); elsewhere it simply runs.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> (tempfile::TempDir, Owned) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("raw.db");
        std::fs::File::create(&path).expect("create");
        let owned = Owned::open(&path).expect("open");
        owned
            .conn()
            .exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, n INTEGER)")
            .expect("schema");
        (dir, owned)
    }

    #[test]
    fn values_round_trip_and_changes_are_counted() {
        let (_dir, owned) = scratch();
        let conn = owned.conn();
        let mut insert = conn
            .prepare("INSERT INTO t (name, n) VALUES (?1, ?2)")
            .expect("prepare");
        assert_eq!(insert.run(&["a'b \"c\"".into(), 7i64.into()]).unwrap(), 1);
        assert_eq!(insert.run(&[Value::Null, None::<i64>.into()]).unwrap(), 1);
        let mut update = conn
            .prepare("UPDATE t SET n = ?1 WHERE n IS NOT NULL")
            .expect("prepare");
        assert_eq!(update.run(&[1i64.into()]).unwrap(), 1);
        let mut select = conn
            .prepare("SELECT name, n FROM t ORDER BY id")
            .expect("prepare");
        let mut rows = select.query(&[]).expect("query");
        assert!(rows.step().unwrap());
        assert_eq!(rows.text(0).as_deref(), Some("a'b \"c\""));
        assert_eq!(rows.int(1), 1);
        assert!(rows.step().unwrap());
        assert_eq!(rows.text(0), None);
        assert!(!rows.step().unwrap());
    }

    #[test]
    fn errors_say_what_sqlite_refused() {
        let (_dir, owned) = scratch();
        let conn = owned.conn();
        let mut insert = conn
            .prepare("INSERT INTO t (name) VALUES (?1)")
            .expect("prepare");
        insert.run(&["x".into()]).expect("first insert");
        let err = insert.run(&["x".into()]).unwrap_err().to_string();
        assert!(err.contains("UNIQUE constraint failed: t.name"), "{err}");
        // The statement is usable again after an error.
        assert_eq!(insert.run(&["y".into()]).unwrap(), 1);
        let err = conn
            .prepare("SELECT nope FROM t")
            .err()
            .expect("bad sql")
            .to_string();
        assert!(err.contains("no such column: nope"), "{err}");
    }
}
