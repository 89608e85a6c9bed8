//! The key-value capability of `herald:plugin/host`: each plugin's small
//! store of tokens and cursors, namespaced by channel so no plugin reads
//! another's keys, with an optional time to live on the host's clock. Kept
//! in the deployment's database, or in memory for plugin tests that have
//! no deployment.

use crate::store::Store;
use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The largest value a plugin may store.
pub const MAX_VALUE: usize = 64 * 1024;

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
        if value.len() > MAX_VALUE {
            bail!(
                "key-value value for `{key}` is {} bytes; the limit is {MAX_VALUE}",
                value.len()
            );
        }
        match self {
            KvBackend::Store(store) => {
                crate::store::kv::set(store, namespace, key, &value, ttl_seconds, now).await
            }
            KvBackend::Memory(map) => {
                let expires =
                    ttl_seconds.map(|s| now.timestamp_millis() + (s.min(1 << 40) as i64) * 1000);
                map.lock()
                    .map_err(|_| anyhow::anyhow!("the key-value map is poisoned"))?
                    .insert((namespace.to_string(), key.to_string()), (value, expires));
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
