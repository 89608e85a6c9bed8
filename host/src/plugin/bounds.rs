//! The lengths of what a plugin hands the host to keep: failure reasons and
//! provider message ids of sends, reports and replies of callbacks, skip
//! reasons of targeting, log lines. A plugin may return any amount (up to
//! its memory cap); what is stored or logged is cut at a character boundary
//! with a visible marker, so a 10 MB reason is stored as 2 KiB and the
//! outcome is still recorded.
//!
//! Owns the limits and the cut; it does not mask secrets (`redact`
//! does, before the cut, so a cut never leaves part of a secret behind).

/// The longest failure, skip or report reason kept, in bytes.
pub const MAX_REASON: usize = 2048;
/// The longest provider message id kept, in bytes. Reports are matched to
/// deliveries by the id cut the same way, so an id longer than this still
/// finds its delivery.
pub const MAX_PROVIDER_ID: usize = 512;
/// The longest reply sender (a phone number, an email address, an openid).
pub const MAX_ADDRESS: usize = 512;
/// The longest answer body a callback gives the provider.
pub const MAX_RESPONSE: usize = 64 * 1024;
/// The longest single log line of a plugin.
pub const MAX_LOG_LINE: usize = 4096;

/// `text` cut to at most `max` bytes, ending with a marker that says how
/// long it was; unchanged when it fits.
pub fn cut(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let marker = format!("…[truncated: {} bytes in all]", text.len());
    let mut keep = max.saturating_sub(marker.len());
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    let mut out = String::with_capacity(keep + marker.len());
    out.push_str(&text[..keep]);
    out.push_str(&marker);
    out
}

/// A failure, skip or report reason, cut to [`MAX_REASON`].
pub fn reason(text: String) -> String {
    cut(text, MAX_REASON)
}

/// A provider message id, cut to [`MAX_PROVIDER_ID`].
pub fn provider_id(text: String) -> String {
    cut(text, MAX_PROVIDER_ID)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_and_long_text_cut_at_a_character_boundary() {
        assert_eq!(cut("short".to_string(), 10), "short");
        assert_eq!(cut("exactly10!".to_string(), 10), "exactly10!");
        let long = "ab失败".repeat(1000);
        for max in 40..60 {
            let out = cut(long.clone(), max);
            assert!(out.len() <= max, "{max}: {} bytes", out.len());
            assert!(out.starts_with("ab失"), "{out}");
            assert!(out.ends_with("…[truncated: 8000 bytes in all]"), "{out}");
        }
        let id = provider_id("x".repeat(10_000_000));
        assert!(id.len() <= MAX_PROVIDER_ID && id.starts_with("xxx"), "{id}");
        assert_eq!(
            provider_id("x".repeat(10_000_000)),
            id,
            "the same id cuts the same way"
        );
        assert!(reason("é".repeat(5000)).len() <= MAX_REASON);
    }

    #[test]
    fn a_limit_shorter_than_the_marker_keeps_only_the_marker() {
        let out = cut("x".repeat(100), 5);
        assert_eq!(out, "…[truncated: 100 bytes in all]");
    }
}
