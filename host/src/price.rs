//! Message prices (`price = "0.045 CNY"` on a channel) and sums of money:
//! an amount held exactly as whole millionths of the currency's unit, an ISO
//! 4217 currency code, and checked arithmetic (a sum that would overflow is
//! an error, never a wrapped or rounded figure).
//!
//! Owns parsing, formatting and arithmetic of money only; may not touch the
//! engine, the store or the rest of the config.

use anyhow::{anyhow, Result};
use serde::Deserialize;
use std::fmt;

/// Millionths in one unit of a currency.
const MICROS_PER_UNIT: u64 = 1_000_000;
/// Decimal places a price may have.
const MAX_DECIMALS: usize = 6;

const HINT: &str = "write the price of one message as an amount and an ISO 4217 currency code, e.g. price = \"0.045 CNY\" or price = \"0.0079 USD\" (at most 6 decimal places, no sign)";

/// The active ISO 4217 codes (funds and metals left out).
const ISO_4217: &str =
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB \
BRL BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB \
EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY \
KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR \
MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF \
SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD \
TZS UAH UGX USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL";

/// An exact amount of money: whole millionths of a currency unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Amount(pub u64);

impl Amount {
    /// This amount `n` times; an error when it would overflow.
    pub fn times(self, n: u64) -> Result<Amount> {
        self.0
            .checked_mul(n)
            .map(Amount)
            .ok_or_else(|| anyhow!("{n} × {self} overflows the largest amount Herald can add up"))
    }

    /// The sum of two amounts; an error when it would overflow.
    pub fn plus(self, other: Amount) -> Result<Amount> {
        self.0.checked_add(other.0).map(Amount).ok_or_else(|| {
            anyhow!("{self} + {other} overflows the largest amount Herald can add up")
        })
    }
}

impl fmt::Display for Amount {
    /// Decimal, with at least two and at most six decimal places: `0.27`,
    /// `0.0024`, `12.00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / MICROS_PER_UNIT;
        let frac = format!("{:06}", self.0 % MICROS_PER_UNIT);
        let trimmed = frac.trim_end_matches('0');
        let shown = if trimmed.len() < 2 {
            &frac[..2]
        } else {
            trimmed
        };
        write!(f, "{whole}.{shown}")
    }
}

/// The price of one message on a channel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Price {
    /// What one message costs.
    pub amount: Amount,
    /// The ISO 4217 code of the currency, e.g. `CNY`.
    pub currency: String,
}

impl Price {
    /// Parse `AMOUNT CODE`, e.g. `0.045 CNY`.
    pub fn parse(text: &str) -> Result<Price, String> {
        let bad = |why: String| format!("price = \"{text}\": {why}; {HINT}");
        let mut parts = text.split_whitespace();
        let (Some(amount), Some(code), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad(
                "expected an amount and a currency code separated by a space".into(),
            ));
        };
        if amount.chars().all(|c| c.is_ascii_alphabetic()) && !code.starts_with(char::is_alphabetic)
        {
            return Err(bad(format!("the amount comes first: \"{code} {amount}\"")));
        }
        let amount = parse_amount(amount).map_err(bad)?;
        if !(code.len() == 3 && code.chars().all(|c| c.is_ascii_uppercase())) {
            return Err(bad(format!(
                "`{code}` is not a currency code (three capital letters)"
            )));
        }
        if !ISO_4217.split_whitespace().any(|c| c == code) {
            let meant = match code {
                "RMB" => " (the renminbi is CNY)",
                "NTD" => " (the New Taiwan dollar is TWD)",
                "UKP" => " (the pound sterling is GBP)",
                _ => "",
            };
            return Err(bad(format!(
                "`{code}` is not an ISO 4217 currency code{meant}"
            )));
        }
        Ok(Price {
            amount,
            currency: code.to_string(),
        })
    }
}

impl TryFrom<String> for Price {
    type Error = String;
    fn try_from(text: String) -> Result<Price, String> {
        Price::parse(&text)
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

/// `12`, `0.045`, `.5`: digits with at most six after the point.
fn parse_amount(text: &str) -> Result<Amount, String> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) {
        return Err(format!("`{text}` is not an amount like 0.045"));
    }
    if frac.len() > MAX_DECIMALS {
        return Err(format!(
            "`{text}` has {} decimal places, more than {MAX_DECIMALS}",
            frac.len()
        ));
    }
    let too_large = || format!("`{text}` is too large");
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    let frac_micros: u64 = format!("{frac:0<6}").parse().map_err(|_| too_large())?;
    whole
        .checked_mul(MICROS_PER_UNIT)
        .and_then(|w| w.checked_add(frac_micros))
        .map(Amount)
        .ok_or_else(too_large)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_amounts_and_iso_codes() {
        let p = Price::parse("0.045 CNY").unwrap();
        assert_eq!(p.amount, Amount(45_000));
        assert_eq!(p.currency, "CNY");
        assert_eq!(p.to_string(), "0.045 CNY");
        assert_eq!(
            Price::parse(" 12  USD ").unwrap().amount,
            Amount(12_000_000)
        );
        assert_eq!(Price::parse(".5 EUR").unwrap().amount, Amount(500_000));
        assert_eq!(Price::parse("0.000001 JPY").unwrap().amount, Amount(1));
        assert_eq!(Price::parse("0 USD").unwrap().amount, Amount(0));
    }

    #[test]
    fn price_errors_say_what_to_fix() {
        for (bad, says) in [
            ("0.045", "an amount and a currency code"),
            ("0.045 CNY extra", "an amount and a currency code"),
            ("CNY 0.045", "the amount comes first: \"0.045 CNY\""),
            ("0,045 CNY", "`0,045` is not an amount"),
            ("-1 USD", "`-1` is not an amount"),
            ("1e3 USD", "`1e3` is not an amount"),
            ("0.0000001 USD", "7 decimal places, more than 6"),
            ("0.045 cny", "`cny` is not a currency code"),
            ("0.045 YUAN", "`YUAN` is not a currency code"),
            ("0.045 ABC", "`ABC` is not an ISO 4217 currency code"),
            ("0.045 RMB", "(the renminbi is CNY)"),
            ("99999999999999999999 USD", "too large"),
            ("", "an amount and a currency code"),
        ] {
            let e = Price::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(e.contains("e.g. price = \"0.045 CNY\""), "{bad}: {e}");
        }
    }

    #[test]
    fn money_adds_exactly_and_refuses_overflow() {
        // 0.1 + 0.2 is 0.3 exactly, unlike f64.
        let sum = Amount(100_000).plus(Amount(200_000)).unwrap();
        assert_eq!(sum, Amount(300_000));
        assert_eq!(sum.to_string(), "0.30");
        assert_eq!(Amount(45_000).times(6).unwrap().to_string(), "0.27");
        assert_eq!(Amount(800).times(3).unwrap().to_string(), "0.0024");
        assert_eq!(Amount(12_000_000).to_string(), "12.00");
        assert!(Amount(u64::MAX).plus(Amount(1)).is_err());
        assert!(Amount(u64::MAX / 2).times(3).is_err());
    }
}
