//! The key-value capability of `herald:plugin/host`: each plugin's small
//! store of tokens and cursors, namespaced by channel so no plugin reads
//! another's keys, with an optional time to live on the host's clock. Kept
//! in the deployment's database, or in memory for plugin tests that have
//! no deployment.

use crate::store::kv::Usage;
use crate::store::Store;
use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The largest value a plugin may store.
pub const MAX_VALUE: usize = 64 * 1024;
/// The longest key, in bytes.
pub const MAX_KEY: usize = 256;
/// The most live keys one channel's plugin may hold.
pub const MAX_KEYS: u64 = 1_000;
/// The most bytes (keys and values) one channel's plugin may hold.
pub const MAX_TOTAL: u64 = 4 * 1024 * 1024;
/// The longest time to live; a longer one (a provider's absurd
/// `expires_in`) is shortened to this.
pub const MAX_TTL_SECONDS: u64 = 366 * 24 * 3600;

/// The most live markers one channel's plugin may hold: small values that
/// expire within [`MARKER_TTL_SECONDS`] (a signed callback remembered for its
/// freshness window, so a replay is refused), counted apart from
/// [`MAX_KEYS`] so a busy channel's callbacks never crowd out its tokens.
pub const MAX_MARKERS: u64 = 100_000;
/// The longest time to live of a marker.
pub const MARKER_TTL_SECONDS: u64 = 3600;
/// The largest value of a marker.
pub const MARKER_BYTES: usize = 64;

/// Whether a write of `value` with `ttl_seconds` is a marker.
fn is_marker(value: &[u8], ttl_seconds: Option<u64>) -> bool {
    value.len() <= MARKER_BYTES && ttl_seconds.is_some_and(|t| t <= MARKER_TTL_SECONDS)
}

/// When a value written at `now` with `ttl_seconds` expires: at most
/// [`MAX_TTL_SECONDS`] later, so no TTL can push it off the calendar.
pub fn expiry(now: DateTime<Utc>, ttl_seconds: u64) -> DateTime<Utc> {
    let seconds = ttl_seconds.min(MAX_TTL_SECONDS) as i64;
    now.checked_add_signed(chrono::Duration::seconds(seconds))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Refuse a write that breaks a quota, saying which and by how much.
fn check_quota(key: &str, value: &[u8], marker: bool, usage: Usage) -> Result<()> {
    let Usage {
        keys,
        bytes,
        markers,
    } = usage;
    if key.len() > MAX_KEY {
        bail!(
            "key-value key is {} bytes; the limit is {MAX_KEY}",
            key.len()
        );
    }
    if value.len() > MAX_VALUE {
        bail!(
            "key-value value for `{key}` is {} bytes; the limit is {MAX_VALUE}",
            value.len()
        );
    }
    if marker {
        if markers >= MAX_MARKERS {
            bail!("this channel's plugin already holds {markers} short-lived markers; the limit is {MAX_MARKERS}");
        }
        return Ok(());
    }
    if keys >= MAX_KEYS {
        bail!("this channel's plugin already holds {keys} keys; the limit is {MAX_KEYS} (delete some, or give them a TTL)");
    }
    let after = bytes + (key.len() + value.len()) as u64;
    if after > MAX_TOTAL {
        bail!("writing `{key}` would bring this channel's key-value store to {after} bytes; the limit is {MAX_TOTAL}");
    }
    Ok(())
}

/// An in-memory key-value store: (namespace, key) → (value, expiry in Unix ms).
pub type MemoryKv = Arc<Mutex<HashMap<(String, String), (Vec<u8>, Option<i64>)>>>;

/// Where a plugin's key-value store lives.
#[derive(Clone, Debug)]
pub enum KvBackend {
    /// The deployment's database.
    Store(Store),
    /// A map in memory (plugin tests with no deployment).
    Memory(MemoryKv),
}

impl KvBackend {
    /// The live value of `key` in `namespace` at `now`.
    pub async fn get(
        &self,
        namespace: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<u8>>> {
        match self {
            KvBackend::Store(store) => crate::store::kv::get(store, namespace, key, now).await,
            KvBackend::Memory(map) => {
                let map = map
                    .lock()
                    .map_err(|_| anyhow::anyhow!("the key-value map is poisoned"))?;
                Ok(map
                    .get(&(namespace.to_string(), key.to_string()))
                    .filter(|(_, exp)| exp.is_none_or(|e| e > now.timestamp_millis()))
                    .map(|(v, _)| v.clone()))
            }
        }
    }

    /// Store `value` under `key`, expiring `ttl_seconds` after `now` if given.
    pub async fn set(
        &self,
        namespace: &str,
        key: &str,
        value: Vec<u8>,
        ttl_seconds: Option<u64>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let expires = ttl_seconds.map(|s| expiry(now, s));
        let marker = is_marker(&value, ttl_seconds);
        let marker_until = expiry(now, MARKER_TTL_SECONDS);
        match self {
            KvBackend::Store(store) => {
                let usage = crate::store::kv::usage_besides(
                    store,
                    namespace,
                    key,
                    now,
                    (marker_until, MARKER_BYTES),
                )
                .await?;
                check_quota(key, &value, marker, usage)?;
                crate::store::kv::set(store, namespace, key, &value, expires).await
            }
            KvBackend::Memory(map) => {
                let mut map = map
                    .lock()
                    .map_err(|_| anyhow::anyhow!("the key-value map is poisoned"))?;
                let now_ms = now.timestamp_millis();
                map.retain(|(ns, _), (_, exp)| ns != namespace || exp.is_none_or(|e| e > now_ms));
                let until = marker_until.timestamp_millis();
                let usage = map
                    .iter()
                    .filter(|((ns, k), _)| ns == namespace && k != key)
                    .fold(Usage::default(), |mut u, ((_, k), (v, exp))| {
                        if v.len() <= MARKER_BYTES && exp.is_some_and(|e| e <= until) {
                            u.markers += 1;
                        } else {
                            u.keys += 1;
                            u.bytes += (k.len() + v.len()) as u64;
                        }
                        u
                    });
                check_quota(key, &value, marker, usage)?;
                let expires = expires.map(|e| e.timestamp_millis());
                map.insert((namespace.to_string(), key.to_string()), (value, expires));
                Ok(())
            }
        }
    }

    /// Remove `key`.
    pub async fn delete(&self, namespace: &str, key: &str) -> Result<()> {
        match self {
            KvBackend::Store(store) => crate::store::kv::delete(store, namespace, key).await,
            KvBackend::Memory(map) => {
                map.lock()
                    .map_err(|_| anyhow::anyhow!("the key-value map is poisoned"))?
                    .remove(&(namespace.to_string(), key.to_string()));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t(seconds: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap() + Duration::seconds(seconds)
    }

    /// The same behaviour from both backends.
    async fn behaves(kv: KvBackend) {
        assert_eq!(kv.get("sms", "token", t(0)).await.unwrap(), None);
        kv.set("sms", "token", b"abc".to_vec(), Some(60), t(0))
            .await
            .unwrap();
        kv.set("sms", "cursor", b"7".to_vec(), None, t(0))
            .await
            .unwrap();
        assert_eq!(
            kv.get("sms", "token", t(59)).await.unwrap(),
            Some(b"abc".to_vec())
        );
        assert_eq!(
            kv.get("sms", "token", t(60)).await.unwrap(),
            None,
            "expired"
        );
        assert_eq!(
            kv.get("email", "cursor", t(0)).await.unwrap(),
            None,
            "another namespace"
        );
        assert_eq!(
            kv.get("sms", "cursor", t(1_000_000)).await.unwrap(),
            Some(b"7".to_vec())
        );
        kv.set("sms", "cursor", b"8".to_vec(), None, t(1))
            .await
            .unwrap();
        assert_eq!(
            kv.get("sms", "cursor", t(1)).await.unwrap(),
            Some(b"8".to_vec())
        );
        kv.delete("sms", "cursor").await.unwrap();
        assert_eq!(kv.get("sms", "cursor", t(1)).await.unwrap(), None);
        let too_big = vec![0u8; MAX_VALUE + 1];
        let err = kv
            .set("sms", "big", too_big, None, t(1))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("the limit is 65536"), "{err}");
        assert_eq!(kv.get("sms", "big", t(1)).await.unwrap(), None);

        // A provider's absurd `expires_in` keeps the value a year at most, and panics nothing.
        kv.set("sms", "forever", b"t".to_vec(), Some(u64::MAX), t(1))
            .await
            .unwrap();
        let year = MAX_TTL_SECONDS as i64;
        assert!(kv.get("sms", "forever", t(year)).await.unwrap().is_some());
        assert!(kv
            .get("sms", "forever", t(year + 1))
            .await
            .unwrap()
            .is_none());

        // Quotas: key length, key count and total bytes per channel.
        let long_key = "k".repeat(MAX_KEY + 1);
        let err = kv
            .set("q", &long_key, vec![], None, t(1))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("the limit is 256"), "{err}");
        for i in 0..MAX_KEYS {
            kv.set("q", &format!("k{i}"), vec![], None, t(1))
                .await
                .unwrap();
        }
        kv.set("q", "k0", b"rewrite".to_vec(), None, t(1))
            .await
            .expect("rewriting a held key is not a new key");
        let err = kv
            .set("q", "one-more", vec![], None, t(1))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("the limit is 1000"), "{err}");
        kv.set("other", "k", vec![], None, t(1))
            .await
            .expect("quotas are per channel");
        let chunk = vec![0u8; MAX_VALUE];
        let fits = (MAX_TOTAL / (MAX_VALUE as u64 + 2)) as usize;
        for i in 0..fits {
            kv.set("big", &format!("{i:02}"), chunk.clone(), None, t(1))
                .await
                .unwrap();
        }
        let err = kv.set("big", "last", chunk, None, t(1)).await.unwrap_err();
        assert!(err.to_string().contains("the limit is 4194304"), "{err}");
    }

    /// A channel remembering one signature per callback for five minutes
    /// (the replay cache) can take more than 1,000 callbacks in that window
    /// and still keep its tokens; expired markers are dropped, so the
    /// store holds only the live ones.
    async fn markers_have_their_own_quota(kv: KvBackend) {
        for i in 0..MAX_KEYS {
            kv.set("wx", &format!("k{i}"), b"token".to_vec(), None, t(0))
                .await
                .unwrap();
        }
        for i in 0..1_500 {
            kv.set("wx", &format!("sig{i}"), b"1".to_vec(), Some(300), t(1))
                .await
                .expect("a marker does not count against the 1,000 keys");
        }
        let err = kv
            .set("wx", "token2", b"x".to_vec(), None, t(1))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("the limit is 1000"), "{err}");
        kv.set("wx", "late", b"1".to_vec(), Some(300), t(400))
            .await
            .unwrap();
        assert_eq!(kv.get("wx", "sig0", t(400)).await.unwrap(), None);
        assert_eq!(
            kv.get("wx", "late", t(400)).await.unwrap(),
            Some(b"1".to_vec())
        );
    }

    #[tokio::test]
    async fn markers_have_their_own_quota_in_memory_and_in_the_database() {
        markers_have_their_own_quota(KvBackend::Memory(Default::default())).await;
        let (_dir, store) = crate::store::testing::scratch().await;
        markers_have_their_own_quota(KvBackend::Store(store.clone())).await;
        let rows = crate::store::kv::rows_of(&store, "wx").await.unwrap();
        assert_eq!(rows, 1_001, "the expired markers were dropped: {rows}");
    }

    #[tokio::test]
    async fn the_memory_backend_namespaces_expires_and_bounds_values() {
        behaves(KvBackend::Memory(Default::default())).await;
    }

    #[tokio::test]
    async fn the_database_backend_behaves_the_same() {
        let (_dir, store) = crate::store::testing::scratch().await;
        behaves(KvBackend::Store(store)).await;
    }
}
