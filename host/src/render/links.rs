//! Signed links a customer can follow without logging in: the
//! unsubscribe link of a channel (`{public_url}/unsubscribe?c=…&ch=…&s=…`)
//! and the preference page (`{public_url}/preferences?c=…&s=…`). The
//! signature is HMAC-SHA256 over the customer's external id (and the
//! channel), under the deployment's link key (`[server] link_secret`, or a
//! random key generated once and kept in the database); preference links
//! use a key derived for them, so neither kind passes for the other.

use crate::store::meta;
use crate::store::Store;
use anyhow::{Context, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const META_KEY: &str = "link_secret";

/// Signs and checks links.
#[derive(Clone)]
pub struct Links {
    /// The public URL links start with, if the deployment has one.
    base: Option<String>,
    key: Vec<u8>,
    /// The key preference-page links are signed with (derived from `key`).
    preferences_key: Vec<u8>,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// The shortest `[server] link_secret` accepted: anyone who guesses the key
/// can forge unsubscribe and tracking links.
pub const MIN_SECRET_LEN: usize = 32;

/// Refuse a link secret too short to keep links unforgeable.
pub fn check_secret(secret: &str) -> Result<()> {
    if secret.len() < MIN_SECRET_LEN {
        anyhow::bail!(
            "[server] link_secret must be at least {MIN_SECRET_LEN} characters (it is {}); generate one with `openssl rand -hex 32`, or leave it out to let Herald keep a random key in the database",
            secret.len()
        );
    }
    Ok(())
}

impl Links {
    /// Links under `base` signed with `secret`, or with the key kept in the
    /// database (created on first use) when no secret is configured.
    pub async fn load(
        store: &Store,
        base: Option<String>,
        secret: Option<String>,
    ) -> Result<Links> {
        let key = match secret {
            Some(s) => {
                check_secret(&s)?;
                s.into_bytes()
            }
            None => match meta::get(store, META_KEY).await? {
                Some(hex_key) => hex::decode(hex_key).context("the stored link key is not hex")?,
                None => {
                    let mut key = [0u8; 32];
                    getrandom::getrandom(&mut key).map_err(|e| {
                        anyhow::anyhow!("cannot get random bytes for the link key: {e}")
                    })?;
                    // Another process may have raced us: keep whichever landed first.
                    let stored = meta::set_if_absent(store, META_KEY, &hex::encode(key)).await?;
                    hex::decode(stored).context("the stored link key is not hex")?
                }
            },
        };
        Ok(Links::new(base, key))
    }

    fn new(base: Option<String>, key: Vec<u8>) -> Links {
        let preferences_key = derive(&key, PREFERENCES);
        Links {
            base,
            key,
            preferences_key,
        }
    }

    fn sign(&self, customer: &str, channel: &str) -> String {
        sign_with(&self.key, customer, channel)
    }

    /// The link to a customer's preference page; `None` without a public URL.
    pub fn preferences_url(&self, customer: &str) -> Option<String> {
        let base = self.base.as_ref()?;
        Some(format!(
            "{base}/preferences?c={}&s={}",
            escape(customer),
            sign_with(&self.preferences_key, customer, "")
        ))
    }

    /// Whether `signature` is this deployment's preference-page signature
    /// for `customer`.
    pub fn verify_preferences(&self, customer: &str, signature: &str) -> bool {
        let expected = sign_with(&self.preferences_key, customer, "");
        constant_time_eq(&expected, signature)
    }

    /// The unsubscribe link for a customer on a channel; `None` without a public URL.
    pub fn unsubscribe_url(&self, customer: &str, channel: &str) -> Option<String> {
        let base = self.base.as_ref()?;
        Some(format!(
            "{base}/unsubscribe?c={}&ch={}&s={}",
            escape(customer),
            escape(channel),
            self.sign(customer, channel)
        ))
    }

    /// A key for another kind of signed link (click tracking, the open
    /// pixel), derived from the link key as HMAC(link key, `purpose`), so its
    /// signatures can never pass for unsubscribe signatures or vice versa.
    pub fn derived_key(&self, purpose: &str) -> Vec<u8> {
        derive(&self.key, purpose)
    }

    /// Whether `signature` is this deployment's signature of the pair.
    pub fn verify(&self, customer: &str, channel: &str, signature: &str) -> bool {
        constant_time_eq(&self.sign(customer, channel), signature)
    }
}

/// The purpose preference-page signatures are keyed for.
const PREFERENCES: &str = "preferences";

/// HMAC(`key`, `purpose`): a key for one kind of link.
fn derive(key: &[u8], purpose: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// HMAC-SHA256 of `customer` and `channel` under `key`, first 16 bytes in hex.
fn sign_with(key: &[u8], customer: &str, channel: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(customer.as_bytes());
    mac.update(b"\0");
    mac.update(channel.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// Compare signatures in time independent of where they differ.
fn constant_time_eq(expected: &str, given: &str) -> bool {
    expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn escape(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_or_empty_secrets_are_refused_with_how_to_make_one() {
        for short in ["", "secret", &"x".repeat(MIN_SECRET_LEN - 1)] {
            let e = check_secret(short).unwrap_err().to_string();
            assert!(e.contains("openssl rand -hex 32"), "{e}");
        }
        assert!(check_secret(&"x".repeat(MIN_SECRET_LEN)).is_ok());
    }

    #[test]
    fn signs_and_verifies() {
        let links = Links::new(Some("https://h.example".into()), b"k".to_vec());
        let url = links.unsubscribe_url("李 1", "sms").unwrap();
        assert!(
            url.starts_with("https://h.example/unsubscribe?c=%E6%9D%8E%201&ch=sms&s="),
            "{url}"
        );
        let sig = url.rsplit("s=").next().unwrap();
        assert!(links.verify("李 1", "sms", sig));
        assert!(!links.verify("李 1", "email", sig));
        assert!(!links.verify("李 2", "sms", sig));
        assert!(!links.verify("李 1", "sms", "00"));
        let other = Links::new(None, b"other".to_vec());
        assert!(!other.verify("李 1", "sms", sig));
        assert_eq!(other.unsubscribe_url("a", "b"), None);
    }

    #[test]
    fn preference_links_are_signed_apart_from_unsubscribe_links() {
        let links = Links::new(Some("https://h.example".into()), b"k".to_vec());
        let url = links.preferences_url("李 1").unwrap();
        assert!(
            url.starts_with("https://h.example/preferences?c=%E6%9D%8E%201&s="),
            "{url}"
        );
        let sig = url.rsplit("s=").next().unwrap();
        assert!(links.verify_preferences("李 1", sig));
        assert!(!links.verify_preferences("李 2", sig));
        // An unsubscribe signature for an empty channel is not a preference signature.
        assert!(!links.verify_preferences("李 1", &links.sign("李 1", "")));
        assert!(!links.verify("李 1", "", sig));
        assert_eq!(Links::new(None, b"k".to_vec()).preferences_url("a"), None);
    }
}
