//! Signed links a customer can follow without logging in: the
//! unsubscribe link of a channel (`{public_url}/unsubscribe?c=…&ch=…&s=…`).
//! The signature is HMAC-SHA256 over the customer's external id and the
//! channel, under the deployment's link key (`[server] link_secret`, or a
//! random key generated once and kept in the database).

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
        Ok(Links { base, key })
    }

    fn sign(&self, customer: &str, channel: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(customer.as_bytes());
        mac.update(b"\0");
        mac.update(channel.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
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
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// Whether `signature` is this deployment's signature of the pair.
    pub fn verify(&self, customer: &str, channel: &str, signature: &str) -> bool {
        let expected = self.sign(customer, channel);
        // Constant-time comparison.
        expected.len() == signature.len()
            && expected
                .bytes()
                .zip(signature.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
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
        let links = Links {
            base: Some("https://h.example".into()),
            key: b"k".to_vec(),
        };
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
        let other = Links {
            base: None,
            key: b"other".to_vec(),
        };
        assert!(!other.verify("李 1", "sms", sig));
        assert_eq!(other.unsubscribe_url("a", "b"), None);
    }
}
