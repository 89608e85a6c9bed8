//! Freshness and single use of signed provider callbacks: a signature proves
//! who made a request, not when, so a captured request could otherwise be
//! replayed forever. A callback is taken only when the timestamp its
//! provider signed is within a window of the host's clock (five minutes by
//! default, the `callback_window` setting, 30 s to 1 h), and only the first
//! time: each accepted request's key (its signature) is remembered in the
//! plugin's key-value store for as long as the request would still be fresh.
//!
//! This module owns the window, the freshness check and the seen-key store;
//! it does not verify signatures (each plugin does, for its provider).
//!
//! Limits, by the host's key-value store (no compare-and-set, at most 1,000
//! live keys per channel): two copies of a request arriving at the same
//! instant may both be taken (the second is refused once the first is
//! remembered), and a channel can remember about 1,000 callbacks per window.

use crate::{kv, Settings};

/// The setting that sets the window, in seconds.
pub const WINDOW_SETTING: &str = "callback_window";
/// The window when the setting is absent: five minutes.
pub const DEFAULT_WINDOW_SECS: u64 = 300;
/// The shortest window the setting may give.
pub const MIN_WINDOW_SECS: u64 = 30;
/// The longest window the setting may give.
pub const MAX_WINDOW_SECS: u64 = 3600;

/// The description of [`WINDOW_SETTING`] for a plugin's `describe`.
pub fn window_setting_spec() -> crate::SettingSpec {
    crate::SettingSpec::optional(
        WINDOW_SETTING,
        "Seconds a signed callback stays valid around the host's clock (default 300, 30 to 3600); a replayed callback is refused",
    )
}

/// The channel's window in seconds, or why its setting is unusable.
pub fn window(settings: &Settings) -> Result<u64, String> {
    let Some(text) = settings.optional(WINDOW_SETTING) else {
        return Ok(DEFAULT_WINDOW_SECS);
    };
    text.parse::<u64>()
        .ok()
        .filter(|w| (MIN_WINDOW_SECS..=MAX_WINDOW_SECS).contains(w))
        .ok_or_else(|| {
            format!(
                "setting `{WINDOW_SETTING}` = {text:?} must be a number of seconds from {MIN_WINDOW_SECS} to {MAX_WINDOW_SECS} (default {DEFAULT_WINDOW_SECS})"
            )
        })
}

/// Checks that `timestamp` (Unix seconds, as the provider signed it) is
/// within `window` seconds of `now`; returns for how many seconds from
/// `now` the request stays fresh (at least 1), the time to remember it.
pub fn fresh_for(timestamp: &str, now: u64, window: u64) -> Result<u64, String> {
    let signed: u64 = timestamp
        .trim()
        .parse()
        .map_err(|_| format!("the signed timestamp {timestamp:?} is not Unix seconds"))?;
    let age = now.abs_diff(signed);
    if age > window {
        let when = if signed < now { "old" } else { "ahead" };
        return Err(format!(
            "the signed timestamp is {age} s {when} of this server's clock; callbacks are taken within {window} s (`{WINDOW_SETTING}`): a replayed request, or a clock to fix"
        ));
    }
    Ok(signed.saturating_add(window).saturating_sub(now).max(1))
}

/// Whether `key` is used for the first time: remembers it for `ttl_secs`
/// (from [`fresh_for`]) and returns true, or returns false when it was
/// already remembered (a replay). Call it after the signature checked out,
/// so only genuine requests take room in the store.
pub fn first_use(key: &str, ttl_secs: u64) -> bool {
    if kv::get(key).is_some() {
        return false;
    }
    kv::set(key, b"1", Some(ttl_secs));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::settings;

    #[test]
    fn the_window_is_bounded() {
        let w = |v: &str| window(&Settings::new(&settings(&[(WINDOW_SETTING, v)])));
        assert_eq!(window(&Settings::new(&[])), Ok(300));
        assert_eq!(w(" 60 "), Ok(60));
        assert_eq!(w("3600"), Ok(3600));
        for bad in ["29", "3601", "5m", "-1", "99999999999999999999999"] {
            let err = w(bad).unwrap_err();
            assert!(
                err.contains("callback_window") && err.contains("30 to 3600"),
                "{err}"
            );
        }
    }

    #[test]
    fn only_timestamps_within_the_window_are_fresh() {
        let now = 1_772_357_000;
        assert_eq!(fresh_for("1772357000", now, 300), Ok(300));
        assert_eq!(fresh_for("1772356700", now, 300), Ok(1), "just in");
        assert_eq!(fresh_for("1772357300", now, 300), Ok(600), "ahead");
        let old = fresh_for("1772356699", now, 300).unwrap_err();
        assert!(old.contains("301 s old") && old.contains("300 s"), "{old}");
        let ahead = fresh_for("1772357301", now, 300).unwrap_err();
        assert!(ahead.contains("ahead"), "{ahead}");
        for bad in ["", "abc", "1772357000.5", "-1", "18446744073709551616"] {
            assert!(fresh_for(bad, now, 300).is_err(), "{bad}");
        }
        assert!(fresh_for("18446744073709551615", now, 300).is_err());
    }
}
