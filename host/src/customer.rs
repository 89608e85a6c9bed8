//! The customer record and the upsert patch that changes it: which fields
//! exist, how a patch merges into a record (named fields replace, attributes
//! merge key by key, `null` removes), how attribute values are typed, and
//! which fields a change touched (for `updated` triggers).

use crate::config::AttributeType;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The customer fields every record has, as template variables and `field` names.
pub const CORE_FIELDS: &[&str] = &[
    "external_id",
    "name",
    "email",
    "phone",
    "wechat_openid",
    "region",
    "timezone",
    "locale",
    "state",
    "created_at",
    "updated_at",
];

/// A stored customer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Customer {
    /// Internal row id; stable for the life of the record.
    pub id: i64,
    /// The operator's id for the customer (unique).
    pub external_id: String,
    /// Display name.
    pub name: Option<String>,
    /// Email address.
    pub email: Option<String>,
    /// Phone number, preferably E.164.
    pub phone: Option<String>,
    /// WeChat OpenID.
    pub wechat_openid: Option<String>,
    /// Region, for region-scoped staff access.
    pub region: Option<String>,
    /// IANA time zone.
    pub timezone: String,
    /// Locale such as `zh-CN`.
    pub locale: Option<String>,
    /// Lifecycle state such as `trial` or `paid`.
    pub state: Option<String>,
    /// Typed attributes.
    pub attributes: Map<String, Value>,
    /// When the record was created.
    pub created_at: DateTime<Utc>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
    /// When the record was deleted, if it was.
    pub deleted_at: Option<DateTime<Utc>>,
    /// App installations registered for push, most recently registered
    /// first (at most [`limits::DEVICES`]).
    pub devices: Vec<Device>,
}

/// One app installation that can receive push messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Device {
    /// The push provider's token for the installation (an FCM registration
    /// token, a JPush registration id, an APNs device token).
    #[schema(min_length = 1, max_length = 4096)]
    pub token: String,
    /// `android`, `ios`, `web` or `harmony`.
    #[schema(max_length = 16)]
    pub platform: String,
    /// The app the token belongs to (bundle id or package name).
    #[schema(min_length = 1, max_length = 256)]
    pub app: String,
    /// When it was last registered.
    pub registered_at: DateTime<Utc>,
}

/// The platforms a device may be on.
pub const PLATFORMS: &[&str] = &["android", "ios", "web", "harmony"];

impl Device {
    /// Check a registration from outside: what is wrong, in words that say
    /// what to send instead.
    pub fn check(token: &str, platform: &str, app: &str) -> Result<(), String> {
        if token.trim().is_empty() || token.len() > limits::DEVICE_TOKEN {
            return Err(format!(
                "token must be 1 to {} bytes, without blanks around it",
                limits::DEVICE_TOKEN
            ));
        }
        if token.trim() != token || token.chars().any(char::is_control) {
            return Err("token must have no spaces around it and no control characters".into());
        }
        if !PLATFORMS.contains(&platform) {
            return Err(format!(
                "platform `{platform}` is not one of {}",
                PLATFORMS.join(", ")
            ));
        }
        if app.trim().is_empty() || app.len() > limits::ID {
            return Err(format!(
                "app must be the app's bundle id or package name (1 to {} bytes)",
                limits::ID
            ));
        }
        Ok(())
    }
}

impl Customer {
    /// A record with only an external id, in UTC, created (and last
    /// changed) at `at`; not stored yet (`id` 0).
    pub fn new(external_id: &str, at: DateTime<Utc>) -> Customer {
        Customer {
            id: 0,
            external_id: external_id.to_string(),
            name: None,
            email: None,
            phone: None,
            wechat_openid: None,
            region: None,
            timezone: "UTC".into(),
            locale: None,
            state: None,
            attributes: Map::new(),
            created_at: at,
            updated_at: at,
            deleted_at: None,
            devices: Vec::new(),
        }
    }

    /// The customer's zone; the stored value was validated on write.
    pub fn tz(&self) -> Tz {
        self.timezone.parse().unwrap_or(Tz::UTC)
    }

    /// The value of a core field or attribute as JSON, for templates and conditions.
    pub fn field(&self, name: &str) -> Option<Value> {
        let text = |v: &Option<String>| v.as_ref().map(|s| Value::String(s.clone()));
        match name {
            "external_id" => Some(Value::String(self.external_id.clone())),
            "name" => text(&self.name),
            "email" => text(&self.email),
            "phone" => text(&self.phone),
            "wechat_openid" => text(&self.wechat_openid),
            "region" => text(&self.region),
            "timezone" => Some(Value::String(self.timezone.clone())),
            "locale" => text(&self.locale),
            "state" => text(&self.state),
            "created_at" => Some(Value::String(self.created_at.to_rfc3339())),
            "updated_at" => Some(Value::String(self.updated_at.to_rfc3339())),
            other => self.attributes.get(other).cloned(),
        }
    }

    /// The record as one flat JSON object (core fields and attributes), the
    /// `customer` variable of templates.
    pub fn to_template_value(&self) -> Value {
        let mut map = Map::new();
        for (k, v) in &self.attributes {
            map.insert(k.clone(), v.clone());
        }
        for field in CORE_FIELDS {
            map.insert(
                (*field).to_string(),
                self.field(field).unwrap_or(Value::Null),
            );
        }
        Value::Object(map)
    }
}

/// An upsert as received from the API, a CSV row or a timeline line: only
/// the fields named change; attributes merge key by key and `null` removes one.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerPatch {
    /// Required: the operator's id (not blank).
    #[schema(min_length = 1, max_length = 256, pattern = "\\S")]
    pub external_id: String,
    /// Display name (`null` clears it).
    #[serde(default, deserialize_with = "patch_field")]
    #[schema(max_length = 1024)]
    pub name: Option<Option<String>>,
    /// Email (`null` clears it).
    #[serde(default, deserialize_with = "patch_field")]
    #[schema(max_length = 1024)]
    pub email: Option<Option<String>>,
    /// Phone (`null` clears it).
    #[serde(default, deserialize_with = "patch_field")]
    #[schema(max_length = 1024)]
    pub phone: Option<Option<String>>,
    /// WeChat OpenID (`null` clears it).
    #[serde(default, deserialize_with = "patch_field")]
    #[schema(max_length = 1024)]
    pub wechat_openid: Option<Option<String>>,
    /// Region (`null` clears it).
    #[serde(default, deserialize_with = "patch_field")]
    #[schema(max_length = 1024)]
    pub region: Option<Option<String>>,
    /// IANA time zone.
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub timezone: Option<String>,
    /// Locale (`null` clears it).
    #[serde(default, deserialize_with = "patch_field")]
    #[schema(max_length = 1024)]
    pub locale: Option<Option<String>>,
    /// Lifecycle state (`null` clears it).
    #[serde(default, deserialize_with = "patch_field")]
    #[schema(max_length = 1024)]
    pub state: Option<Option<String>>,
    /// When the customer first appeared, if not now.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    /// Attributes to set (`null` removes); see [`attributes_schema`].
    #[serde(default)]
    #[schema(schema_with = attributes_schema)]
    pub attributes: Map<String, Value>,
}

/// The document's schema of a patch's `attributes`, with the limits the
/// server keeps.
fn attributes_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(format!(
            "Attributes to set (`null` removes one): at most {} in one write, each name at most {} bytes and each value at most {} bytes as JSON. A declared `date` takes `YYYY-MM-DD` or an RFC 3339 timestamp, a `datetime` an RFC 3339 timestamp or a date, in the years 1900–9999; a declared `string` keeps a string exactly as sent.",
            limits::ATTRIBUTES,
            limits::ATTRIBUTE_NAME,
            limits::ATTRIBUTE_VALUE
        )))
        .max_properties(Some(limits::ATTRIBUTES))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(limits::ATTRIBUTE_NAME)),
        ))
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        .build()
}

/// The largest values a customer write may carry (bytes of UTF-8; an
/// attribute value as JSON text).
pub mod limits {
    /// `external_id`.
    pub const ID: usize = 256;
    /// Each core text field (name, email, phone, ...).
    pub const FIELD: usize = 1024;
    /// An attribute's name.
    pub const ATTRIBUTE_NAME: usize = 128;
    /// An attribute's value.
    pub const ATTRIBUTE_VALUE: usize = 4096;
    /// Attributes in one write.
    pub const ATTRIBUTES: usize = 256;
    /// An event's kind.
    pub const EVENT_KIND: usize = 128;
    /// An event's `event_id`.
    pub const EVENT_ID: usize = 256;
    /// A device's push token.
    pub const DEVICE_TOKEN: usize = 4096;
    /// Devices kept per customer: registering one more forgets the one
    /// registered longest ago.
    pub const DEVICES: usize = 10;
}

/// Distinguish an absent field (`None`) from an explicit `null` (`Some(None)`).
fn patch_field<'de, D>(deserializer: D) -> Result<Option<Option<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Some(Option::<String>::deserialize(deserializer)?))
}

/// The declared attribute types of a deployment.
pub type AttributeSchema = BTreeMap<String, AttributeType>;

/// A customer record after a patch, with the names of what changed.
#[derive(Debug, Clone)]
pub struct Merged {
    /// The new record (id is the old one's, or 0 for a new record).
    pub customer: Customer,
    /// Fields and attributes whose value changed.
    pub changed: Vec<String>,
}

/// Why a patch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(pub String);

impl CustomerPatch {
    /// Apply the patch to `existing` (or to an empty record), validating values.
    pub fn merge(
        &self,
        existing: Option<&Customer>,
        schema: &AttributeSchema,
        default_timezone: &str,
        now: DateTime<Utc>,
    ) -> Result<Merged, PatchError> {
        let external_id = self.external_id.trim();
        if external_id.is_empty() {
            return Err(PatchError("external_id must not be empty".into()));
        }
        self.check_sizes()?;
        if let Some(at) = self.created_at {
            crate::clock::in_range(at, "created_at").map_err(PatchError)?;
        }
        let mut c = match existing {
            Some(c) => c.clone(),
            None => {
                let mut c = Customer::new(external_id, self.created_at.unwrap_or(now));
                c.timezone = default_timezone.to_string();
                c.updated_at = now;
                c
            }
        };
        let before = c.clone();
        self.apply_fields(&mut c)?;
        self.apply_attributes(&mut c, schema)?;
        let changed = changes(&before, &c);
        if existing.is_none() || !changed.is_empty() {
            c.updated_at = now;
        }
        Ok(Merged {
            customer: c,
            changed,
        })
    }

    /// Refuse a field, attribute name or value longer than Herald stores,
    /// or more attributes than it keeps, saying which and the limit.
    fn check_sizes(&self) -> Result<(), PatchError> {
        let long = |what: &str, len: usize, max: usize| {
            Err(PatchError(format!(
                "{what} is {len} bytes; the limit is {max}"
            )))
        };
        if self.external_id.len() > limits::ID {
            return long("external_id", self.external_id.len(), limits::ID);
        }
        let fields = [
            ("name", &self.name),
            ("email", &self.email),
            ("phone", &self.phone),
            ("wechat_openid", &self.wechat_openid),
            ("region", &self.region),
            ("locale", &self.locale),
            ("state", &self.state),
        ];
        for (name, value) in fields {
            if let Some(Some(v)) = value {
                if v.len() > limits::FIELD {
                    return long(name, v.len(), limits::FIELD);
                }
            }
        }
        if let Some(tz) = self.timezone.as_ref().filter(|tz| tz.len() > limits::FIELD) {
            return long("timezone", tz.len(), limits::FIELD);
        }
        if self.attributes.len() > limits::ATTRIBUTES {
            return Err(PatchError(format!(
                "{} attributes in one write; the limit is {}",
                self.attributes.len(),
                limits::ATTRIBUTES
            )));
        }
        for (key, value) in &self.attributes {
            if key.len() > limits::ATTRIBUTE_NAME {
                return long("an attribute name", key.len(), limits::ATTRIBUTE_NAME);
            }
            let len = value.to_string().len();
            if len > limits::ATTRIBUTE_VALUE {
                return long(&format!("attribute `{key}`"), len, limits::ATTRIBUTE_VALUE);
            }
        }
        Ok(())
    }

    /// The patch's core fields on `c`: named fields replace (blank or `null`
    /// clears), the zone and email are checked.
    fn apply_fields(&self, c: &mut Customer) -> Result<(), PatchError> {
        let set = |target: &mut Option<String>, value: &Option<Option<String>>| {
            if let Some(v) = value {
                *target = v
                    .as_ref()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty());
            }
        };
        set(&mut c.name, &self.name);
        set(&mut c.email, &self.email);
        set(&mut c.phone, &self.phone);
        set(&mut c.wechat_openid, &self.wechat_openid);
        set(&mut c.region, &self.region);
        set(&mut c.locale, &self.locale);
        set(&mut c.state, &self.state);
        if let Some(tz) = &self.timezone {
            let tz = tz.trim();
            if tz.parse::<Tz>().is_err() {
                return Err(PatchError(format!(
                    "timezone `{tz}` is not an IANA time zone name (e.g. `Asia/Shanghai`, `Europe/Berlin`, `UTC`)"
                )));
            }
            c.timezone = tz.to_string();
        }
        if let Some(email) = &c.email {
            if !email.contains('@') || email.starts_with('@') || email.ends_with('@') {
                return Err(PatchError(format!(
                    "email `{email}` is not an email address"
                )));
            }
        }
        Ok(())
    }

    /// The patch's attributes on `c`, key by key: `null` removes, declared
    /// ones are typed.
    fn apply_attributes(
        &self,
        c: &mut Customer,
        schema: &AttributeSchema,
    ) -> Result<(), PatchError> {
        for (key, value) in &self.attributes {
            if CORE_FIELDS.contains(&key.as_str()) {
                return Err(PatchError(format!(
                    "attribute `{key}` has the name of a customer field; set it as a field, not under attributes"
                )));
            }
            if value.is_null() {
                c.attributes.remove(key);
                continue;
            }
            let typed = match schema.get(key) {
                Some(ty) => coerce(key, value, *ty)?,
                None => value.clone(),
            };
            c.attributes.insert(key.clone(), typed);
        }
        Ok(())
    }
}

/// The core fields (but `updated_at`) and attributes that differ.
fn changes(before: &Customer, after: &Customer) -> Vec<String> {
    let mut changed: Vec<String> = CORE_FIELDS
        .iter()
        .filter(|f| **f != "updated_at" && before.field(f) != after.field(f))
        .map(|f| f.to_string())
        .collect();
    let keys: std::collections::BTreeSet<&String> = before
        .attributes
        .keys()
        .chain(after.attributes.keys())
        .collect();
    for key in keys {
        if before.attributes.get(key) != after.attributes.get(key) {
            changed.push(key.clone());
        }
    }
    changed
}

/// What a `date` attribute takes, as refusals say it.
const DATE_WORDS: &str = "a date: `YYYY-MM-DD`, or an RFC 3339 timestamp such as `2026-03-05T09:30:00+08:00` (its date in the customer's time zone), in the years 1900–9999";
/// What a `datetime` attribute takes, as refusals say it.
const DATETIME_WORDS: &str = "a timestamp: RFC 3339 such as `2026-03-05T09:30:00Z` (`Z` or an offset like `+08:00` required), or a date `YYYY-MM-DD`, in the years 1900–9999";

/// Check and normalise a value against its declared type.
pub fn coerce(key: &str, value: &Value, ty: AttributeType) -> Result<Value, PatchError> {
    let bad = |what: &str| {
        Err(PatchError(format!(
            "attribute `{key}` is declared as {what} but got {value}"
        )))
    };
    match ty {
        AttributeType::String => match value {
            Value::String(_) => Ok(value.clone()),
            // A whole number past 2^53 arrives already rounded to a float:
            // storing it would change its digits.
            Value::Number(n) if n.is_f64() && n.as_f64().is_some_and(|f| f.abs() >= 9_007_199_254_740_992.0) => {
                Err(PatchError(format!(
                    "attribute `{key}` is declared as a string but got the number {value}, too long to keep every digit; send it as a JSON string"
                )))
            }
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            _ => bad("a string"),
        },
        AttributeType::Number => match value {
            Value::Number(_) => Ok(value.clone()),
            Value::String(s) => match s.trim().parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(number_value(f)),
                _ => bad("a (finite) number"),
            },
            _ => bad("a number"),
        },
        AttributeType::Bool => match value {
            Value::Bool(_) => Ok(value.clone()),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Ok(Value::Bool(true)),
                "false" | "no" | "0" => Ok(Value::Bool(false)),
                _ => bad("a boolean"),
            },
            _ => bad("a boolean"),
        },
        AttributeType::Date => match value.as_str().and_then(parse_date_or_datetime) {
            Some(DateOrTime::Date(d)) => Ok(Value::String(d.format("%Y-%m-%d").to_string())),
            Some(DateOrTime::Time(t)) => Ok(Value::String(t.to_rfc3339())),
            None => bad(DATE_WORDS),
        },
        AttributeType::Datetime => match value.as_str().and_then(parse_date_or_datetime) {
            Some(DateOrTime::Time(t)) => Ok(Value::String(t.to_rfc3339())),
            Some(DateOrTime::Date(d)) => Ok(Value::String(format!("{}", d.format("%Y-%m-%d")))),
            None => bad(DATETIME_WORDS),
        },
    }
}

fn number_value(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9e15 {
        Value::from(f as i64)
    } else {
        serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// A date attribute as stored: a calendar date or an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateOrTime {
    /// `YYYY-MM-DD`.
    Date(NaiveDate),
    /// RFC 3339.
    Time(DateTime<Utc>),
}

impl DateOrTime {
    /// The calendar date in zone `tz`.
    pub fn local_date(&self, tz: Tz) -> NaiveDate {
        match self {
            DateOrTime::Date(d) => *d,
            DateOrTime::Time(t) => t.with_timezone(&tz).date_naive(),
        }
    }
}

/// The one rule for dates and timestamps from outside (date and datetime
/// attributes, CSV cells): surrounding blanks aside, exactly `YYYY-MM-DD`
/// (four-digit year, two-digit month and day, a real calendar date), or an
/// RFC 3339 timestamp — `YYYY-MM-DD`, `T` (or `t`, or a space), `hh:mm:ss`,
/// an optional fraction, then `Z` or an offset `±hh:mm`; in the years
/// Herald accepts ([`crate::clock::in_range`], the timestamp's year in
/// UTC). Anything else (`2026-3-5`, a signed or five-digit year, no
/// seconds, no offset, `+0800`) is not a date.
pub fn parse_date_or_datetime(text: &str) -> Option<DateOrTime> {
    let t = text.trim();
    if t.len() == 10 {
        return plain_date(t)
            .and_then(|d| crate::clock::date_in_range(d, "").ok())
            .map(DateOrTime::Date);
    }
    DateTime::parse_from_rfc3339(t)
        .ok()
        .and_then(|dt| crate::clock::in_range(dt.with_timezone(&Utc), "").ok())
        .map(DateOrTime::Time)
}

/// `YYYY-MM-DD` with every digit written, as a calendar date.
fn plain_date(t: &str) -> Option<NaiveDate> {
    let b = t.as_bytes();
    let digits = [0, 1, 2, 3, 5, 6, 8, 9];
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && digits.iter().all(|&i| b[i].is_ascii_digit());
    if !shaped {
        return None;
    }
    let number = |range: std::ops::Range<usize>| t[range].parse::<u32>().ok();
    NaiveDate::from_ymd_opt(number(0..4)? as i32, number(5..7)?, number(8..10)?)
}

/// Infer the type of an undeclared text value (CSV cells): ISO dates and
/// timestamps become dates, `true`/`false` booleans, numbers numbers.
pub fn infer_text(text: &str) -> Value {
    let t = text.trim();
    match parse_date_or_datetime(t) {
        Some(DateOrTime::Date(d)) => return Value::String(d.format("%Y-%m-%d").to_string()),
        Some(DateOrTime::Time(dt)) => return Value::String(dt.to_rfc3339()),
        None => {}
    }
    match t {
        "true" => return Value::Bool(true),
        "false" => return Value::Bool(false),
        _ => {}
    }
    // Leading `+` and leading zeros mark phone numbers and codes, not numbers.
    let looks_like_code =
        t.starts_with('+') || (t.len() > 1 && t.starts_with('0') && !t.starts_with("0."));
    if !looks_like_code {
        if let Ok(f) = t.parse::<f64>() {
            if f.is_finite() {
                return number_value(f);
            }
        }
    }
    Value::String(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn oversized_values_and_lossy_numbers_are_refused_with_the_limit() {
        let schema: AttributeSchema = [("code".to_string(), AttributeType::String)].into();
        let refused = |body: serde_json::Value| -> String {
            let patch: CustomerPatch = serde_json::from_value(body).unwrap();
            patch.merge(None, &schema, "UTC", now()).unwrap_err().0
        };
        let name = "x".repeat(limits::FIELD + 1);
        let e = refused(serde_json::json!({"external_id": "c1", "name": name}));
        assert!(e.contains("name is 1025 bytes; the limit is 1024"), "{e}");
        let e = refused(serde_json::json!({"external_id": "i".repeat(300)}));
        assert!(e.contains("external_id"), "{e}");
        let e = refused(
            serde_json::json!({"external_id": "c1", "attributes": {"note": "n".repeat(5000)}}),
        );
        assert!(e.contains("attribute `note`"), "{e}");
        let digits: serde_json::Value = serde_json::from_str("12345678901234567890123").unwrap();
        let e = refused(serde_json::json!({"external_id": "c1", "attributes": {"code": digits}}));
        assert!(e.contains("send it as a JSON string"), "{e}");
        let fine: CustomerPatch = serde_json::from_value(
            serde_json::json!({"external_id": "c1", "attributes": {"code": 1234567}}),
        )
        .unwrap();
        let merged = fine.merge(None, &schema, "UTC", now()).unwrap();
        assert_eq!(merged.customer.attributes["code"], "1234567");
    }

    #[test]
    fn patch_merges_attributes_and_reports_changes() {
        let schema: AttributeSchema = [("trial_ends_at".to_string(), AttributeType::Date)].into();
        let p1: CustomerPatch = serde_json::from_value(serde_json::json!({
            "external_id": "c1", "name": "Li Lei", "state": "trial", "timezone": "Asia/Shanghai",
            "attributes": {"trial_ends_at": "2026-03-31", "plan": "pro"}
        }))
        .unwrap();
        let m1 = p1.merge(None, &schema, "UTC", now()).unwrap();
        let p2: CustomerPatch = serde_json::from_value(serde_json::json!({
            "external_id": "c1", "state": "paid", "attributes": {"plan": null}
        }))
        .unwrap();
        let m2 = p2.merge(Some(&m1.customer), &schema, "UTC", now()).unwrap();
        assert_eq!(m2.customer.name.as_deref(), Some("Li Lei"));
        assert_eq!(m2.customer.state.as_deref(), Some("paid"));
        assert!(!m2.customer.attributes.contains_key("plan"));
        assert_eq!(m2.changed, vec!["state".to_string(), "plan".to_string()]);
    }

    #[test]
    fn bad_values_are_explained() {
        let schema: AttributeSchema = [("trial_ends_at".to_string(), AttributeType::Date)].into();
        let p: CustomerPatch = serde_json::from_value(serde_json::json!({
            "external_id": "c1", "attributes": {"trial_ends_at": "next tuesday"}
        }))
        .unwrap();
        let err = p.merge(None, &schema, "UTC", now()).unwrap_err().0;
        assert!(
            err.contains("trial_ends_at") && err.contains("date"),
            "{err}"
        );
        let p: CustomerPatch = serde_json::from_value(
            serde_json::json!({"external_id": "c1", "timezone": "Mars/Base"}),
        )
        .unwrap();
        assert!(p
            .merge(None, &schema, "UTC", now())
            .unwrap_err()
            .0
            .contains("IANA"));
    }

    #[test]
    fn dates_follow_one_rule() {
        let date = |t: &str| parse_date_or_datetime(t);
        assert!(matches!(date(" 2026-03-05 "), Some(DateOrTime::Date(_))));
        for instant in [
            "2026-03-05T10:00:00Z",
            "2026-03-05t10:00:00z",
            "2026-03-05 10:00:00Z",
            "2026-03-05T10:00:00.123456789+08:00",
            "2026-03-05T10:00:00-00:00",
        ] {
            assert!(
                matches!(date(instant), Some(DateOrTime::Time(_))),
                "{instant}"
            );
        }
        for not_a_date in [
            "2026-3-5",
            "2026-03-5",
            "+2026-03-05",
            "02026-03-05",
            "2026-02-30",
            "1899-12-31",
            "2026-03-05T10:00",
            "2026-03-05T10:00:00",
            "2026-03-05T10:00:00+0800",
            "2026-03-05T10:00:00 +08:00",
            "2026-03-05T10:00:00+08",
            "20260305",
            "",
        ] {
            assert_eq!(date(not_a_date), None, "{not_a_date}");
        }
        let schema: AttributeSchema = [("d".to_string(), AttributeType::Date)].into();
        let e = coerce("d", &Value::from("2026-3-5"), schema["d"])
            .unwrap_err()
            .0;
        assert!(e.contains("YYYY-MM-DD") && e.contains("RFC 3339"), "{e}");
    }

    #[test]
    fn infers_csv_types() {
        assert_eq!(infer_text("2026-03-05"), Value::String("2026-03-05".into()));
        assert_eq!(infer_text("42"), Value::from(42));
        assert_eq!(infer_text("0138"), Value::String("0138".into()));
        assert_eq!(infer_text("true"), Value::Bool(true));
        assert_eq!(infer_text("vip"), Value::String("vip".into()));
    }
}
