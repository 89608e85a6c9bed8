//! The on-disk cache of compiled plugins, keyed by the component's content
//! hash and the engine's compatibility hash, so a restart (or another test
//! process) does not compile the same plugin again.
//!
//! A compiled plugin is loaded as native code, so whoever can write the
//! cache directory can make Herald run their code: the directory is created
//! for this user alone (0700), and one that another user owns or can write
//! (group- or other-writable, sticky or not: a sticky directory still lets
//! others create a file under a name Herald will load) is refused with an
//! error that says how to fix it. A cached file another user owns or can
//! write is not loaded (compiled again instead). Where the directory is
//! (`config::default_cache_dir`) is not this module's business.

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::Path;
use wasmtime::component::Component;
use wasmtime::Engine;

/// Load the compiled form of `bytes` from `dir`, or compile and store it.
/// `dir` must have passed [`check_dir`].
pub fn load_or_compile(engine: &Engine, dir: &Path, bytes: &[u8]) -> Result<Component> {
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let content = hex::encode(Sha256::digest(bytes));
    let path = dir.join(format!(
        "{}-{:016x}.cwasm",
        &content[..32],
        engine_hash.finish()
    ));
    if path.exists() {
        match private_file(&path) {
            // SAFETY: the file was written by `Component::serialize` of an
            // engine with the same compatibility hash, into Herald's own
            // cache directory, which no other user can write (`check_dir`),
            // and the file is this user's alone (`private_file`).
            Ok(()) => match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "ignoring unreadable compiled plugin: {e}")
                }
            },
            Err(e) => {
                tracing::warn!(path = %path.display(), "not loading a compiled plugin: {e:#}")
            }
        }
    }
    let component = Component::new(engine, bytes).map_err(|e| anyhow!("{e:#}"))?;
    if let Err(e) = store(&component, dir, &path) {
        tracing::warn!(dir = %dir.display(), "cannot cache the compiled plugin (it will be compiled again next time): {e:#}");
    }
    Ok(component)
}

/// Create `dir` for this user alone (0700) if it is missing, and refuse it
/// if another user owns it or can write it.
pub fn check_dir(dir: &Path) -> Result<()> {
    create_private(dir)?;
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("cannot read the plugin cache directory {}", dir.display()))?;
    if !meta.is_dir() {
        bail!(
            "the plugin cache directory {} is not a directory; point HERALD_CACHE_DIR (or [plugins] cache_dir) at a directory",
            dir.display()
        );
    }
    ours_alone(&meta).map_err(|why| {
        anyhow!(
            "the plugin cache directory {} {why}, and compiled plugins there are run as native code: use a directory only this user can write (chmod 700 {0}, owned by this user), or set HERALD_CACHE_DIR (or [plugins] cache_dir) to one",
            dir.display()
        )
    })
}

#[cfg(unix)]
fn create_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.exists() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create the plugin cache directory {}", dir.display()))
}

#[cfg(not(unix))]
fn create_private(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the plugin cache directory {}", dir.display()))
}

/// Why another user could change what `meta` describes, if they could.
#[cfg(unix)]
fn ours_alone(meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!(
            "belongs to user id {}, not to this user (id {me})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "is writable by other users (mode {:o})",
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn ours_alone(_meta: &std::fs::Metadata) -> Result<(), String> {
    Ok(())
}

/// Whether the cached file at `path` is a plain file only this user can write.
fn private_file(path: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_file() {
        bail!("it is not a plain file");
    }
    ours_alone(&meta).map_err(|why| anyhow!("it {why}"))
}

fn store(component: &Component, dir: &Path, path: &Path) -> Result<()> {
    let serialized = component.serialize().map_err(|e| anyhow!("{e:#}"))?;
    // NamedTempFile creates the file 0600.
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::fs::write(tmp.path(), serialized)?;
    tmp.persist(path)?;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_missing_directory_is_created_for_this_user_alone() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("a/b/herald");
        check_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        check_dir(&dir).unwrap();
    }

    #[test]
    fn a_directory_other_users_can_write_is_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("cache");
        std::fs::create_dir(&dir).unwrap();
        for (bits, ok) in [
            (0o700, true),
            (0o755, true),
            (0o775, false),
            (0o757, false),
            (0o1777, false),
        ] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(bits)).unwrap();
            let result = check_dir(&dir);
            assert_eq!(result.is_ok(), ok, "{bits:o}: {result:?}");
            if let Err(e) = result {
                let e = e.to_string();
                assert!(
                    e.contains("writable by other users") && e.contains("chmod 700"),
                    "{e}"
                );
            }
        }
        let file = scratch.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(check_dir(&file)
            .unwrap_err()
            .to_string()
            .contains("not a directory"));
    }

    #[test]
    fn a_directory_or_file_of_another_user_is_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().join("cache");
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join("x.cwasm");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        private_file(&file).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(private_file(&file).is_err());
        // Giving files away needs root; elsewhere this part cannot run.
        let nobody = 65534;
        if std::os::unix::fs::chown(&dir, Some(nobody), None).is_ok() {
            let e = check_dir(&dir).unwrap_err().to_string();
            assert!(e.contains("belongs to user id 65534"), "{e}");
            std::os::unix::fs::chown(&file, Some(nobody), None).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
            assert!(private_file(&file).is_err());
        }
    }
}
