//! Contact addresses in one comparable form, the only place that decides
//! when two written addresses are the same: the do-not-contact list stores
//! addresses in this form and customers' addresses are compared through it.
//! Email: trimmed and lower-cased as a whole (local part included: no
//! provider Herald talks to treats `Ann@` and `ann@` as two mailboxes).
//! Phone: E.164, `+` and 8 to 15 digits; spaces, dashes, dots and
//! parentheses are dropped and a `00` prefix becomes `+`; a number without
//! a country code (no `+` or `00`) is refused: Herald cannot guess the
//! country. Pure: no I/O, no time.

use std::fmt;

/// The longest address accepted (an email is at most 254 octets).
pub const MAX_LEN: usize = 254;

/// What kind of address is on the do-not-contact list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// An email address.
    Email,
    /// A phone number (E.164).
    Phone,
}

impl Kind {
    /// The stored name: `email` or `phone`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Phone => "phone",
        }
    }

    /// `email` or `phone`, or a message that says what is accepted.
    pub fn parse(text: &str) -> Result<Kind, String> {
        match text.trim() {
            "email" => Ok(Kind::Email),
            "phone" => Ok(Kind::Phone),
            other => Err(format!(
                "unknown address kind `{other}`: use `email` or `phone`"
            )),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `raw` as an address of `kind` in its one comparable form, or why not.
pub fn normalise(kind: Kind, raw: &str) -> Result<String, String> {
    match kind {
        Kind::Email => email(raw),
        Kind::Phone => phone(raw),
    }
}

/// An email address trimmed and lower-cased; refused without exactly one
/// `@` with something on both sides, or with spaces inside.
pub fn email(raw: &str) -> Result<String, String> {
    let text = raw.trim();
    if text.len() > MAX_LEN {
        return Err(format!(
            "email address longer than {MAX_LEN} bytes: shorten it"
        ));
    }
    let mut parts = text.split('@');
    let (local, domain) = (parts.next().unwrap_or(""), parts.next());
    let well_formed = matches!(domain, Some(d) if !d.is_empty())
        && !local.is_empty()
        && parts.next().is_none()
        && !text.chars().any(|c| c.is_whitespace() || c.is_control());
    if !well_formed {
        return Err(format!(
            "`{}` is not an email address: write it as name@domain",
            shown(text)
        ));
    }
    Ok(text.to_lowercase())
}

/// A phone number in E.164 (`+` then 8 to 15 digits).
pub fn phone(raw: &str) -> Result<String, String> {
    let text = raw.trim();
    if text.len() > MAX_LEN {
        return Err(format!("phone number longer than {MAX_LEN} bytes"));
    }
    let mut digits = String::with_capacity(16);
    let mut plus = false;
    for (i, c) in text.chars().enumerate() {
        match c {
            '+' if i == 0 => plus = true,
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => {
                return Err(format!(
                    "`{}` is not a phone number: only digits, a leading +, spaces, dashes, dots and parentheses",
                    shown(text)
                ))
            }
        }
    }
    if !plus {
        match digits.strip_prefix("00") {
            Some(rest) => digits = rest.to_string(),
            None => {
                return Err(format!(
                    "`{}` has no country code: write it in international form (+86 138..., or 0086 138...)",
                    shown(text)
                ))
            }
        }
    }
    if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
        return Err(format!(
            "`{}` is not an E.164 number: a country code (not starting with 0) and 8 to 15 digits in all",
            shown(text)
        ));
    }
    Ok(format!("+{digits}"))
}

/// `text` cut for an error message.
fn shown(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased_whole() {
        assert_eq!(email("  Ann@Example.COM ").unwrap(), "ann@example.com");
        assert!(email("ann").unwrap_err().contains("name@domain"));
        assert!(email("a@b@c").is_err());
        assert!(email("@b").is_err());
        assert!(email("a b@c").is_err());
    }

    #[test]
    fn phones_become_e164() {
        assert_eq!(phone("+86 138-0000-0000").unwrap(), "+8613800000000");
        assert_eq!(phone("0086 (138) 0000.0000").unwrap(), "+8613800000000");
        assert_eq!(phone("+1 (415) 555-0100").unwrap(), "+14155550100");
        assert!(phone("13800000000").unwrap_err().contains("country code"));
        assert!(phone("+86 138 abc").unwrap_err().contains("only digits"));
        assert!(phone("+1234").unwrap_err().contains("E.164"));
        assert!(phone("+1234567890123456").is_err());
        assert!(phone("1+23456789").is_err());
    }

    #[test]
    fn kinds_parse_by_name() {
        assert_eq!(Kind::parse("phone"), Ok(Kind::Phone));
        assert!(Kind::parse("fax")
            .unwrap_err()
            .contains("`email` or `phone`"));
    }
}
