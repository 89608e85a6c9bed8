//! Masking a channel's secret values in what its plugin says (log lines,
//! send outcomes, callback errors) as `[redacted]`. A plugin rarely repeats
//! a secret as written: it puts it in a URL or a JSON body and echoes the
//! request. So each character of a secret is found as written,
//! percent-encoded (`%2F`, `%2b`: either hex case, `+` for a space) or
//! JSON-escaped (`\"`, `\\`, `\/`, `\n`, `\u00e9` or a surrogate pair), in
//! any mix, since encoders differ in what they leave alone.
//!
//! Owns the matching; which values are secrets is the channel loader's call.

/// What a secret is replaced with.
const MASK: &str = "[redacted]";
/// Secrets shorter than this are not masked: a flag or a digit would mask
/// innocent text.
const MIN_SECRET: usize = 4;
/// The most steps one match attempt may take (forms that share a prefix,
/// such as `%` and `%25`, are tried in turn).
const MAX_STEPS: usize = 4096;

/// Replace every occurrence of a secret in `text`, in any of its forms,
/// with `[redacted]`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    redact_owned(text.to_string(), secrets)
}

/// [`redact`] of an owned string: no copy when no secret occurs in it.
pub(crate) fn redact_owned(text: String, secrets: &[String]) -> String {
    let secrets: Vec<Vec<char>> = secrets
        .iter()
        .filter(|s| s.len() >= MIN_SECRET)
        .map(|s| s.chars().collect())
        .collect();
    if secrets.is_empty() {
        return text;
    }
    let bytes = text.as_bytes();
    let mut stack = Vec::new();
    let mut out: Option<String> = None;
    let (mut copied, mut at) = (0, 0);
    while at < bytes.len() {
        let found = secrets
            .iter()
            .find_map(|secret| match_at(bytes, at, secret, &mut stack));
        match found {
            // Every form ends at a character boundary: the slices are sound.
            Some(end) => {
                let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
                out.push_str(&text[copied..at]);
                out.push_str(MASK);
                (copied, at) = (end, end);
            }
            None => at += 1,
        }
    }
    match out {
        None => text,
        Some(mut out) => {
            out.push_str(&text[copied..]);
            out
        }
    }
}

/// Where a form of `secret` that starts at `at` in `text` ends, if one does.
/// `stack` is scratch space, reused between calls.
fn match_at(
    text: &[u8],
    at: usize,
    secret: &[char],
    stack: &mut Vec<(usize, usize, usize)>,
) -> Option<usize> {
    nth_form(*secret.first()?, &text[at..], 0)?;
    // (characters matched, position in the text, next form to try)
    stack.clear();
    stack.push((0, at, 0));
    let mut steps = 0;
    while let Some(top) = stack.last_mut() {
        let (matched, pos, form) = *top;
        if matched == secret.len() {
            return Some(pos);
        }
        steps += 1;
        if steps > MAX_STEPS {
            return None;
        }
        match nth_form(secret[matched], &text[pos..], form) {
            Some(len) => {
                top.2 += 1;
                stack.push((matched + 1, pos + len, 0));
            }
            None => {
                stack.pop();
            }
        }
    }
    None
}

/// The length of the `n`th form of `c` that `rest` starts with: as written,
/// percent-encoded, `+` for a space, a JSON short escape, `\uXXXX`.
fn nth_form(c: char, rest: &[u8], n: usize) -> Option<usize> {
    let mut utf8 = [0u8; 4];
    let raw = c.encode_utf8(&mut utf8).as_bytes();
    let forms = [
        rest.starts_with(raw).then_some(raw.len()),
        percent_encoded(raw, rest),
        (c == ' ' && rest.first() == Some(&b'+')).then_some(1),
        json_short_escape(c).and_then(|e| rest.starts_with(&[b'\\', e]).then_some(2)),
        json_unicode_escape(c, rest),
    ];
    forms.into_iter().flatten().nth(n)
}

/// `%XX` for each byte of `raw`, in either hex case.
fn percent_encoded(raw: &[u8], rest: &[u8]) -> Option<usize> {
    let len = raw.len() * 3;
    let encoded = rest.get(..len)?;
    raw.iter()
        .zip(encoded.chunks(3))
        .all(|(b, e)| e[0] == b'%' && hex_value(&e[1..]) == Some(u32::from(*b)))
        .then_some(len)
}

/// The letter of `c`'s two-character JSON escape, if it has one.
fn json_short_escape(c: char) -> Option<u8> {
    Some(match c {
        '"' => b'"',
        '\\' => b'\\',
        '/' => b'/',
        '\u{8}' => b'b',
        '\u{c}' => b'f',
        '\n' => b'n',
        '\r' => b'r',
        '\t' => b't',
        _ => return None,
    })
}

/// `\uXXXX` (a surrogate pair beyond the BMP), in either hex case.
fn json_unicode_escape(c: char, rest: &[u8]) -> Option<usize> {
    let mut units = [0u16; 2];
    let units = c.encode_utf16(&mut units);
    let len = units.len() * 6;
    let escaped = rest.get(..len)?;
    units
        .iter()
        .zip(escaped.chunks(6))
        .all(|(u, e)| e.starts_with(b"\\u") && hex_value(&e[2..]) == Some(u32::from(*u)))
        .then_some(len)
}

/// The value of ASCII hex digits, either case.
fn hex_value(digits: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(digits).ok()?;
    if text.starts_with('+') || text.starts_with('-') {
        return None;
    }
    u32::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_left_alone_and_unchanged_text_is_not_copied() {
        let secrets = vec!["ab".to_string(), "s3cret-token".to_string()];
        assert_eq!(redact("ab cd ab", &secrets), "ab cd ab");
        assert_eq!(
            redact("key s3cret-token twice s3cret-token", &secrets),
            "key [redacted] twice [redacted]"
        );
        let text = String::from("nothing secret");
        let ptr = text.as_ptr();
        let kept = redact_owned(text, &secrets);
        assert_eq!(kept.as_ptr(), ptr, "the same allocation");
    }

    #[test]
    fn forms_that_share_a_prefix_are_tried_in_turn() {
        // `%` as written, then `%25`; `\` as written, then `\\`.
        let secrets = vec!["50%off\\now".to_string()];
        for text in [
            "50%off\\now",
            "50%25off%5Cnow",
            r"50%off\\now",
            "50%25off\\\\now",
        ] {
            assert_eq!(redact(text, &secrets), "[redacted]", "{text}");
        }
        assert_eq!(redact("50%off", &secrets), "50%off");
    }

    #[test]
    fn secrets_are_masked_percent_encoded_and_json_escaped_too() {
        let secrets = vec![
            "s3cr/t+key".to_string(),
            "pa\"ss\\word".to_string(),
            "密钥 with space".to_string(),
        ];
        let masked = |text: &str| redact(text, &secrets);
        for (text, want) in [
            ("token=s3cr/t+key&x=1", "token=[redacted]&x=1"),
            ("token=s3cr%2Ft%2Bkey&x=1", "token=[redacted]&x=1"),
            ("token=s3cr%2ft%2bkey", "token=[redacted]"),
            ("/path/s3cr/t%2Bkey/", "/path/[redacted]/"),
            (
                r#"{"password":"pa\"ss\\word"}"#,
                r#"{"password":"[redacted]"}"#,
            ),
            (r#"{"key":"s3cr\/t+key"}"#, r#"{"key":"[redacted]"}"#),
            (
                r#"{"key":"s3cr\u002ft\u002Bkey"}"#,
                r#"{"key":"[redacted]"}"#,
            ),
            ("pa%22ss%5Cword", "[redacted]"),
            ("q=%E5%AF%86%E9%92%A5+with+space", "q=[redacted]"),
            ("q=%e5%af%86%e9%92%a5%20with%20space", "q=[redacted]"),
            (r#""\u5bc6\u94a5 with space""#, r#""[redacted]""#),
            (
                "nothing here: s3cr/t+ke, pa%22ss",
                "nothing here: s3cr/t+ke, pa%22ss",
            ),
        ] {
            assert_eq!(masked(text), want, "{text}");
            assert_eq!(redact_owned(text.to_string(), &secrets), want, "{text}");
        }
    }

    #[test]
    fn redact_owned_masks_like_redact() {
        let secrets = vec!["s3cret-token".to_string(), "ab".to_string()];
        for text in [
            "no secret here",
            "key s3cret-token twice s3cret-token",
            "ab",
        ] {
            assert_eq!(
                redact_owned(text.to_string(), &secrets),
                redact(text, &secrets)
            );
        }
    }
}
