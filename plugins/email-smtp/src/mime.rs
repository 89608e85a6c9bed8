//! The email message itself, written by hand: RFC 5322 headers folded to at
//! most 78 characters a line, RFC 2047 encoded-words (`=?UTF-8?B?…?=`) for
//! every non-ASCII header text, an RFC 5322 `Date`, a `Message-ID` derived
//! from the idempotency key, and an RFC 2045/2046 body (`multipart/alternative`
//! of text and HTML, or a single text part) whose parts are UTF-8 in base64
//! wrapped at 76 characters. The result is 7-bit clean with CRLF line endings,
//! so it needs neither `8BITMIME` nor `SMTPUTF8` from the relay.
//! Also owns SMTP `DATA` dot-stuffing and the address syntax checks.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Longest header line written (RFC 5322 recommends 78 without the CRLF).
const LINE: usize = 76;
/// Base64 body lines are wrapped at this many characters (RFC 2045 §6.8).
const B64_LINE: usize = 76;
/// The longest an encoded-word may be (RFC 2047 §2).
const MAX_ENCODED_WORD: usize = 75;
/// `=?UTF-8?B?` + `?=`.
const ENCODED_WORD_OVERHEAD: usize = 12;

/// A display name and an address.
#[derive(Debug, Clone, Copy)]
pub struct Mailbox<'a> {
    pub name: Option<&'a str>,
    pub email: &'a str,
}

/// Everything that goes into one message.
#[derive(Debug, Clone)]
pub struct Email<'a> {
    pub from: Mailbox<'a>,
    pub to: Mailbox<'a>,
    pub reply_to: Option<&'a str>,
    pub subject: &'a str,
    pub text: &'a str,
    pub html: Option<&'a str>,
    /// Seconds since the Unix epoch, for the `Date` header.
    pub date: i64,
    /// With angle brackets: `<…@domain>`.
    pub message_id: &'a str,
    pub boundary: &'a str,
    pub unsubscribe_url: Option<&'a str>,
    pub rule: &'a str,
}

/// The complete message (headers and body), CRLF line endings, not yet
/// dot-stuffed.
pub fn build(email: &Email) -> Vec<u8> {
    let mut out = String::new();
    out.push_str(&mailbox_header("From", email.from));
    out.push_str(&mailbox_header("To", email.to));
    if let Some(reply_to) = email.reply_to {
        out.push_str(&structured_header("Reply-To", &format!("<{reply_to}>")));
    }
    if !email.subject.is_empty() {
        out.push_str(&unstructured_header("Subject", email.subject));
    }
    out.push_str(&format!("Date: {}\r\n", rfc5322_date(email.date)));
    out.push_str(&structured_header("Message-ID", email.message_id));
    out.push_str("MIME-Version: 1.0\r\n");
    if let Some(url) = email.unsubscribe_url.filter(|u| header_safe_url(u)) {
        out.push_str(&structured_header("List-Unsubscribe", &format!("<{url}>")));
        out.push_str("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
    }
    out.push_str(&unstructured_header("X-Herald-Rule", email.rule));

    let text_part = |out: &mut String| {
        out.push_str("Content-Type: text/plain; charset=UTF-8\r\n");
        out.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
        out.push_str(&base64_lines(canonical_text(email.text).as_bytes()));
        out.push_str("\r\n");
    };
    match email.html {
        None => text_part(&mut out),
        Some(html) => {
            let b = email.boundary;
            out.push_str(&format!(
                "Content-Type: multipart/alternative;\r\n boundary=\"{b}\"\r\n\r\n"
            ));
            out.push_str(&format!("--{b}\r\n"));
            text_part(&mut out);
            out.push_str(&format!("--{b}\r\n"));
            out.push_str("Content-Type: text/html; charset=UTF-8\r\n");
            out.push_str("Content-Transfer-Encoding: base64\r\n\r\n");
            out.push_str(&base64_lines(canonical_text(html).as_bytes()));
            out.push_str("\r\n");
            out.push_str(&format!("--{b}--\r\n"));
        }
    }
    out.into_bytes()
}

/// `<first 128 bits of sha256(idempotency key) in hex@domain>`: the same for
/// every attempt at one reminder, so a relay or mailbox that dedupes on
/// Message-ID sees a retry as the same message.
pub fn message_id(idempotency_key: &str, domain: &str) -> String {
    let digest = Sha256::digest(idempotency_key.as_bytes());
    format!("<{}@{domain}>", hex::encode(&digest[..16]))
}

/// A multipart boundary derived from the idempotency key: deterministic, and
/// unable to occur in base64 content (`_` is not a base64 character).
pub fn boundary(idempotency_key: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"herald-boundary:");
    hasher.update(idempotency_key.as_bytes());
    format!("=_herald_{}", &hex::encode(hasher.finalize())[..32])
}

/// Text with every line break as CRLF (the canonical form of text in MIME).
pub fn canonical_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("\r\n");
            }
            '\n' => out.push_str("\r\n"),
            c => out.push(c),
        }
    }
    out
}

/// Base64 of `bytes` in lines of 76 characters joined by CRLF (no CRLF after
/// the last line).
pub fn base64_lines(bytes: &[u8]) -> String {
    let encoded = B64.encode(bytes);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / B64_LINE * 2);
    for (i, chunk) in encoded.as_bytes().chunks(B64_LINE).enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
    }
    out
}

/// The bytes to send after `DATA`'s 354: every line that starts with `.` gets
/// another `.` (RFC 5321 §4.5.2), the message ends with CRLF, then `.` CRLF.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 16);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// An RFC 5322 date in UTC: `Sun, 01 Mar 2026 09:00:00 +0000`.
pub fn rfc5322_date(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = herald_pdk::time::civil_from_days(days);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// RFC 2047 encoded-words (`=?UTF-8?B?…?=`) for `text`, none longer than
/// 75 characters and none splitting a character; the first fits in
/// `first_room` characters (when at least one character fits there).
pub fn encoded_words(text: &str, first_room: usize) -> Vec<String> {
    // Whole UTF-8 bytes that fit in a word of `room` characters (base64
    // turns 3 bytes into 4 characters); at least one character of any size.
    let capacity = |room: usize| {
        (room
            .min(MAX_ENCODED_WORD)
            .saturating_sub(ENCODED_WORD_OVERHEAD)
            / 4
            * 3)
        .max(6)
    };
    let mut words = Vec::new();
    let mut room = capacity(first_room);
    let mut chunk = String::new();
    for c in text.chars() {
        if !chunk.is_empty() && chunk.len() + c.len_utf8() > room {
            words.push(encode_word(&chunk));
            chunk.clear();
            room = capacity(LINE - 1);
        }
        chunk.push(c);
    }
    if !chunk.is_empty() || words.is_empty() {
        words.push(encode_word(&chunk));
    }
    words
}

fn encode_word(chunk: &str) -> String {
    format!("=?UTF-8?B?{}?=", B64.encode(chunk.as_bytes()))
}

/// Whether header text can go out as it is: printable ASCII only, nothing
/// that a decoder would take for an encoded-word, and no word too long to fold.
fn plain_ascii(text: &str) -> bool {
    text.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !text.contains("=?")
        && text.split(' ').all(|w| w.len() <= LINE - 20)
}

/// `Name: value` CRLF for unstructured text (Subject, X- headers): printable
/// ASCII folded at spaces, anything else as encoded-words one per line.
pub fn unstructured_header(name: &str, text: &str) -> String {
    let prefix = format!("{name}: ");
    if plain_ascii(text) {
        fold_words(&prefix, text.split(' '))
    } else {
        let words = encoded_words(text, LINE - prefix.len());
        join_folded(&prefix, &words, "")
    }
}

/// `Name: value` CRLF for a value that cannot be split (an address, a
/// Message-ID, a URL): on the next line when the first would be too long.
fn structured_header(name: &str, value: &str) -> String {
    if name.len() + 2 + value.len() > LINE {
        format!("{name}:\r\n {value}\r\n")
    } else {
        format!("{name}: {value}\r\n")
    }
}

/// `From: name <addr>` CRLF: a display name as it is when it is plain atoms,
/// a quoted-string when it is other printable ASCII, encoded-words otherwise.
pub fn mailbox_header(name: &str, mailbox: Mailbox) -> String {
    let prefix = format!("{name}: ");
    let addr = format!("<{}>", mailbox.email);
    let display = herald_pdk::non_empty(mailbox.name);
    match display {
        None => format!("{prefix}{addr}\r\n"),
        Some(n)
            if n.split(' ')
                .all(|w| !w.is_empty() && w.bytes().all(is_atext)) =>
        {
            fold_words(&prefix, n.split(' ').chain([addr.as_str()]))
        }
        Some(n) if plain_ascii(n) => {
            let quoted = format!("\"{}\"", n.replace('\\', "\\\\").replace('"', "\\\""));
            fold_words(&prefix, [quoted.as_str(), addr.as_str()].into_iter())
        }
        Some(n) => {
            let words = encoded_words(n, LINE - prefix.len());
            join_folded(&prefix, &words, &addr)
        }
    }
}

/// RFC 5322 `atext`.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// `prefix` then the words separated by single spaces, starting a new
/// (space-indented) line before a word that would overflow the line. Empty
/// words (runs of spaces) stay where they are, so unfolding restores the text.
fn fold_words<'a>(prefix: &str, words: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::from(prefix);
    let mut line_len = prefix.len();
    let mut first = true;
    for word in words {
        if first {
            out.push_str(word);
            line_len += word.len();
            first = false;
            continue;
        }
        if !word.is_empty() && line_len + 1 + word.len() > LINE && line_len > prefix.len() {
            out.push_str("\r\n ");
            line_len = 1;
        } else {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += word.len();
    }
    out.push_str("\r\n");
    out
}

/// `prefix`, the encoded-words one per line, then `tail` (an address) on the
/// last line when it fits, else on a line of its own.
fn join_folded(prefix: &str, words: &[String], tail: &str) -> String {
    let mut out = String::from(prefix);
    let mut line_len = prefix.len();
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n ");
            line_len = 1;
        }
        out.push_str(word);
        line_len += word.len();
    }
    if !tail.is_empty() {
        out.push_str(if line_len + 1 + tail.len() > LINE {
            "\r\n "
        } else {
            " "
        });
        out.push_str(tail);
    }
    out.push_str("\r\n");
    out
}

/// A URL safe to put between angle brackets in a header.
fn header_safe_url(url: &str) -> bool {
    !url.is_empty()
        && url
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b'<' && b != b'>')
}

/// Checks that `addr` is an address this plugin can put on the wire
/// (`local@domain`, printable ASCII, no spaces or brackets); the error says
/// what is wrong with it.
pub fn check_address(addr: &str) -> Result<(), String> {
    if addr.is_empty() {
        return Err("the address is empty".into());
    }
    if !addr.is_ascii() {
        return Err(format!(
            "`{addr}` has non-ASCII characters; internationalized addresses need SMTPUTF8, which this plugin does not use"
        ));
    }
    if let Some(bad) = addr.chars().find(|c| {
        c.is_ascii_control() || matches!(c, ' ' | '<' | '>' | '(' | ')' | ',' | ';' | '"' | '\\')
    }) {
        return Err(format!("`{}` contains {bad:?}", addr.escape_debug()));
    }
    match addr.rsplit_once('@') {
        Some((local, domain))
            if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
        {
            Ok(())
        }
        _ => Err(format!("`{addr}` is not of the form local@domain")),
    }
}

/// The domain of an address already checked by [`check_address`].
pub fn domain_of(addr: &str) -> &str {
    addr.rsplit_once('@').map(|(_, d)| d).unwrap_or(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_words(header_value: &str) -> String {
        // Unfold, then decode each encoded-word; whitespace between words is dropped.
        let unfolded = header_value.replace("\r\n", "");
        let mut out = Vec::new();
        for token in unfolded.split_whitespace() {
            let inner = token
                .strip_prefix("=?UTF-8?B?")
                .and_then(|t| t.strip_suffix("?="))
                .unwrap_or_else(|| panic!("not an encoded-word: {token}"));
            out.extend(B64.decode(inner).unwrap());
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn chinese_subject_is_encoded_in_short_words_and_round_trips() {
        let subject = "【Acme】您的试用将于4天后结束";
        let header = unstructured_header("Subject", subject);
        assert!(header.starts_with("Subject: =?UTF-8?B?"), "{header}");
        assert!(header.ends_with("?=\r\n"));
        for line in header.trim_end_matches("\r\n").split("\r\n") {
            assert!(line.len() <= 78, "line too long: {line:?}");
            assert!(line.is_ascii());
        }
        let value = header.strip_prefix("Subject: ").unwrap().trim_end();
        assert_eq!(decode_words(value), subject);
        // A long subject is split into several words, each at most 75 chars,
        // each holding whole characters.
        let long = "您的试用将于4天后结束，请尽快升级到专业版以免丢失数据。".repeat(4);
        let header = unstructured_header("Subject", &long);
        let lines: Vec<&str> = header.trim_end().split("\r\n").collect();
        assert!(lines.len() > 3, "{header}");
        for (i, line) in lines.iter().enumerate() {
            assert!(line.len() <= 78, "{line}");
            if i > 0 {
                assert!(
                    line.starts_with(' '),
                    "continuation lines start with a space"
                );
            }
            let word = line.trim_start_matches("Subject:").trim();
            assert!(word.len() <= 75, "{word}");
            let inner = &word[10..word.len() - 2];
            String::from_utf8(B64.decode(inner).unwrap()).expect("whole characters per word");
        }
        assert_eq!(
            decode_words(header.strip_prefix("Subject: ").unwrap().trim_end()),
            long
        );
    }

    #[test]
    fn ascii_subjects_stay_readable_and_fold_at_spaces() {
        assert_eq!(
            unstructured_header("Subject", "Your trial ends in 4 days"),
            "Subject: Your trial ends in 4 days\r\n"
        );
        let long = "word ".repeat(40);
        let long = long.trim_end();
        let header = unstructured_header("Subject", long);
        let lines: Vec<&str> = header.trim_end().split("\r\n").collect();
        assert!(lines.len() >= 3);
        assert!(lines.iter().all(|l| l.len() <= 78));
        assert!(lines[1..].iter().all(|l| l.starts_with(' ')));
        // Unfolding (removing CRLF) gives back the text exactly.
        assert_eq!(
            header.trim_end().replace("\r\n", ""),
            format!("Subject: {long}")
        );
        // Text that looks like an encoded-word, or has control characters, is encoded.
        assert!(unstructured_header("Subject", "=?UTF-8?B?x?=").contains("=?UTF-8?B?PT9"));
        let injected = unstructured_header("Subject", "hi\r\nBcc: victim@example.com");
        assert_eq!(injected.matches("\r\n").count(), 1, "{injected}");
    }

    #[test]
    fn mailboxes() {
        let m = |name, email| Mailbox { name, email };
        assert_eq!(
            mailbox_header("From", m(None, "a@example.com")),
            "From: <a@example.com>\r\n"
        );
        assert_eq!(
            mailbox_header("From", m(Some("Acme Billing"), "a@example.com")),
            "From: Acme Billing <a@example.com>\r\n"
        );
        assert_eq!(
            mailbox_header("To", m(Some("O'Brien, \"Pat\""), "p@example.com")),
            "To: \"O'Brien, \\\"Pat\\\"\" <p@example.com>\r\n"
        );
        let h = mailbox_header("To", m(Some("李雷"), "li@example.com"));
        assert_eq!(h, "To: =?UTF-8?B?5p2O6Zu3?= <li@example.com>\r\n");
        let long_name = "非常非常长的名字".repeat(6);
        let h = mailbox_header("To", m(Some(&long_name), "li@example.com"));
        assert!(h.trim_end().split("\r\n").all(|l| l.len() <= 78), "{h}");
        assert!(h.trim_end().ends_with(" <li@example.com>"));
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(
            dot_stuff(b"a\r\n.b\r\n..c\r\n"),
            b"a\r\n..b\r\n...c\r\n.\r\n"
        );
        assert_eq!(dot_stuff(b".\r\nx"), b"..\r\nx\r\n.\r\n");
        assert_eq!(dot_stuff(b""), b"\r\n.\r\n");
        assert_eq!(dot_stuff(b"a.b\r\n"), b"a.b\r\n.\r\n");
    }

    #[test]
    fn base64_wrapping() {
        let data = vec![0xffu8; 200];
        let wrapped = base64_lines(&data);
        let lines: Vec<&str> = wrapped.split("\r\n").collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[..3].iter().all(|l| l.len() == 76));
        assert_eq!(B64.decode(wrapped.replace("\r\n", "")).unwrap(), data);
        assert_eq!(base64_lines(b""), "");
        assert_eq!(
            base64_lines(&[0; 57]).len(),
            76,
            "57 bytes fill one line exactly"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        // 2026-03-01T09:00:00Z was a Sunday.
        assert_eq!(
            rfc5322_date(1_772_355_600),
            "Sun, 01 Mar 2026 09:00:00 +0000"
        );
        // 2024-02-29T23:59:59Z, a leap day.
        assert_eq!(
            rfc5322_date(1_709_251_199),
            "Thu, 29 Feb 2024 23:59:59 +0000"
        );
        assert_eq!(rfc5322_date(-1), "Wed, 31 Dec 1969 23:59:59 +0000");
    }

    #[test]
    fn canonical_line_endings() {
        assert_eq!(canonical_text("a\nb\r\nc\rd"), "a\r\nb\r\nc\r\nd");
    }

    #[test]
    fn ids_are_stable_per_key() {
        let a = message_id("rem-1:welcome:0", "acme.example");
        assert_eq!(a, message_id("rem-1:welcome:0", "acme.example"));
        assert_ne!(a, message_id("rem-2:welcome:0", "acme.example"));
        assert!(a.starts_with('<') && a.ends_with("@acme.example>"));
        assert_eq!(a.len(), 1 + 32 + 1 + "acme.example".len() + 1);
        let long_domain = format!("{}.example", "sub".repeat(20));
        let h = structured_header("Message-ID", &message_id("k", &long_domain));
        assert!(h.starts_with("Message-ID:\r\n <"), "{h}");
        let b = boundary("k");
        assert_eq!(b, boundary("k"));
        assert!(b.len() <= 70 && b.starts_with("=_herald_"));
    }

    #[test]
    fn address_checks() {
        assert!(check_address("a.b+c@example.com").is_ok());
        assert!(check_address("").is_err());
        assert!(check_address("no-at").is_err());
        assert!(check_address("a@").is_err());
        assert!(check_address("a b@example.com").is_err());
        assert!(check_address("a@example.com>\r\nRCPT TO:<x@y").is_err());
        assert!(check_address("用户@example.com")
            .unwrap_err()
            .contains("SMTPUTF8"));
    }

    #[test]
    fn whole_message_structure() {
        let id = message_id("k", "acme.example");
        let b = boundary("k");
        let email = Email {
            from: Mailbox {
                name: Some("Acme 团队"),
                email: "noreply@acme.example",
            },
            to: Mailbox {
                name: Some("李雷"),
                email: "li@example.com",
            },
            reply_to: Some("help@acme.example"),
            subject: "【Acme】您的试用将于4天后结束",
            text: "您好\n.leading dot\n",
            html: Some("<p>您好</p>"),
            date: 1_772_355_600,
            message_id: &id,
            boundary: &b,
            unsubscribe_url: Some("https://acme.example/u/1"),
            rule: "trial-ending",
        };
        let raw = String::from_utf8(build(&email)).unwrap();
        assert!(raw.is_ascii(), "7-bit clean");
        assert!(!raw.replace("\r\n", "").contains('\n'), "CRLF only");
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        for needle in [
            "From: =?UTF-8?B?",
            "To: =?UTF-8?B?5p2O6Zu3?= <li@example.com>",
            "Reply-To: <help@acme.example>",
            "Date: Sun, 01 Mar 2026 09:00:00 +0000",
            &format!("Message-ID: {id}"),
            "MIME-Version: 1.0",
            "List-Unsubscribe: <https://acme.example/u/1>",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            "X-Herald-Rule: trial-ending",
            &format!("Content-Type: multipart/alternative;\r\n boundary=\"{b}\""),
        ] {
            assert!(head.contains(needle), "missing {needle:?} in\n{head}");
        }
        assert!(body.starts_with(&format!("--{b}\r\nContent-Type: text/plain; charset=UTF-8")));
        assert!(body.contains("Content-Type: text/html; charset=UTF-8"));
        assert!(body.ends_with(&format!("\r\n--{b}--\r\n")));
        // Text only: one part, no multipart.
        let text_only = Email {
            html: None,
            unsubscribe_url: None,
            ..email
        };
        let raw = String::from_utf8(build(&text_only)).unwrap();
        assert!(raw.contains("Content-Type: text/plain; charset=UTF-8\r\n"));
        assert!(!raw.contains("multipart"));
        assert!(!raw.contains("List-Unsubscribe"));
        let body = raw.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(
            B64.decode(body.trim_end().replace("\r\n", "")).unwrap(),
            "您好\r\n.leading dot\r\n".as_bytes()
        );
    }
}
