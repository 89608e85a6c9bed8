//! The on-disk cache of compiled plugins, keyed by the component's content
//! hash and the engine's compatibility hash, so a restart (or another test
//! process) does not compile the same plugin again.

use anyhow::{anyhow, Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::Path;
use wasmtime::component::Component;
use wasmtime::Engine;

/// Load the compiled form of `bytes` from `dir`, or compile and store it.
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
        // SAFETY: the file was written by `Component::serialize` of an engine
        // with the same compatibility hash, into Herald's own cache directory.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => return Ok(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring unreadable compiled plugin: {e}")
            }
        }
    }
    let component = Component::new(engine, bytes).map_err(|e| anyhow!("{e:#}"))?;
    if let Err(e) = store(&component, dir, &path) {
        tracing::warn!(dir = %dir.display(), "cannot cache the compiled plugin (it will be compiled again next time): {e:#}");
    }
    Ok(component)
}

fn store(component: &Component, dir: &Path, path: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let serialized = component.serialize().map_err(|e| anyhow!("{e:#}"))?;
    let tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::fs::write(tmp.path(), serialized)?;
    tmp.persist(path)?;
    Ok(())
}
