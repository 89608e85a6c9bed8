//! The formats and digests the fakes (and the tests that talk to them)
//! share: Base64, SHA-1, SHA-256, HMAC-SHA1/SHA256, RFC 3986
//! percent-encoding and `application/x-www-form-urlencoded` forms and query
//! strings.

#![allow(dead_code)]

use hmac::Mac;

/// Standard Base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// SHA-1 (FIPS 180-4).
pub fn sha1(data: &[u8]) -> [u8; 20] {
    use sha1::Digest;
    sha1::Sha1::digest(data).into()
}

/// SHA-256 as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// HMAC-SHA1 (RFC 2104).
pub fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA256 of `body` with `secret`, as lowercase hex (the webhook
/// plugin's `X-Herald-Signature: sha256=...`).
pub fn hmac_sha256_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// RFC 3986 percent-encoding (unreserved kept, space `%20`).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `application/x-www-form-urlencoded` encoding (space as `+`).
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).expect("string pairs encode")
}

/// Decodes a form body or query string (`+` as space, `%XY`).
pub fn form_decode(body: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).expect("form pairs decode")
}

/// The decoded query string of a request path (empty without one, or when
/// it does not decode).
pub fn query_of(path: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str(path.split_once('?').map_or("", |(_, q)| q)).unwrap_or_default()
}

/// The first value of `key`.
pub fn form_get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[test]
fn digests_and_encodings_match_known_vectors() {
    // RFC 2202 test case 2; FIPS 180 "abc" vectors; RFC 4648 padding.
    let mac = hmac_sha1(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(hex::encode(mac), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    assert_eq!(
        hex::encode(sha1(b"abc")),
        "a9993e364706816aba3e25717850c26c9cd0d89d"
    );
    assert_eq!(
        hex::encode(sha1(b"")),
        "da39a3ee5e6b4b0d3255bfef95601890afd80709"
    );
    assert_eq!(
        hex::encode(sha1(
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        )),
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
    );
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    // RFC 4231 test case 2.
    assert_eq!(
        hmac_sha256_hex("Jefe", b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"abc"), "YWJj");
    assert_eq!(base64(b"a"), "YQ==");
    assert_eq!(percent_encode("a b+c/~é"), "a%20b%2Bc%2F~%C3%A9");
    let pairs = form_decode(form_encode(&[("Body", "您好 a+b&c"), ("x", "%")]).as_bytes());
    assert_eq!(form_get(&pairs, "Body"), Some("您好 a+b&c"));
    assert_eq!(form_get(&pairs, "x"), Some("%"));
    assert_eq!(
        query_of("/cgi-bin/token?grant_type=client_credential&appid=wx%201"),
        [
            ("grant_type".to_string(), "client_credential".to_string()),
            ("appid".to_string(), "wx 1".to_string())
        ]
    );
}
