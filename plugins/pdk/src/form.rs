//! `application/x-www-form-urlencoded` bodies and query strings: encoding
//! for requests (Twilio, WeChat's token URL) and decoding for provider
//! callbacks. Percent-encoding follows the WHATWG form rules (space as `+`).

/// Encodes pairs as `k=v&k2=v2`.
pub fn encode<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        escape_into(&mut out, k.as_ref());
        out.push('=');
        escape_into(&mut out, v.as_ref());
    }
    out
}

/// Percent-encodes one component the way forms do.
pub fn escape(value: &str) -> String {
    let mut out = String::new();
    escape_into(&mut out, value);
    out
}

fn escape_into(out: &mut String, value: &str) {
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

/// Decodes `k=v&k2=v2` (a body or a query string) into pairs, in order.
/// Malformed escapes are kept literally; invalid UTF-8 is replaced.
pub fn decode(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&b| b == b'&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut kv = part.splitn(2, |&b| b == b'=');
            let k = kv.next().unwrap_or_default();
            let v = kv.next().unwrap_or_default();
            (unescape(k), unescape(v))
        })
        .collect()
}

/// The first value of `key` among decoded pairs.
pub fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn unescape(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < raw.len() => match (hex(raw[i + 1]), hex(raw[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_unicode_and_reserved_characters() {
        let pairs = [("Body", "您好 a+b=c&d"), ("To", "+8613800138000")];
        let encoded = encode(&pairs);
        assert_eq!(
            encoded,
            "Body=%E6%82%A8%E5%A5%BD+a%2Bb%3Dc%26d&To=%2B8613800138000"
        );
        let decoded = decode(encoded.as_bytes());
        assert_eq!(get(&decoded, "Body"), Some("您好 a+b=c&d"));
        assert_eq!(get(&decoded, "To"), Some("+8613800138000"));
        assert_eq!(get(&decoded, "Missing"), None);
    }

    #[test]
    fn malformed_escapes_are_kept() {
        let decoded = decode(b"a=%zz&b=%4&c=%41");
        assert_eq!(get(&decoded, "a"), Some("%zz"));
        assert_eq!(get(&decoded, "b"), Some("%4"));
        assert_eq!(get(&decoded, "c"), Some("A"));
    }
}
