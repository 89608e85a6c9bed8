//! `herald plugin new`: a plugin crate that builds with
//! `cargo build --target wasm32-wasip2 --release` and passes
//! `herald plugin test` as it is — a channel plugin posting JSON to its `url`
//! setting through the pdk, or a targeting plugin on the WIT bindings —
//! with example settings, message, fixtures and a README.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// What kind of plugin to scaffold.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Delivers reminders (world channel-plugin).
    Channel,
    /// Decides whether a due reminder goes out (world targeting-plugin).
    Targeting,
}

/// `herald plugin new` arguments.
#[derive(clap::Args, Debug)]
pub struct NewArgs {
    /// The crate name: lowercase letters, digits, `-` and `_`, starting with a letter.
    pub name: String,
    /// What the plugin does.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Where to create the crate (default: ./NAME). Must not exist or be empty.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The herald-pdk crate to depend on (default: the one in the Herald
    /// checkout this binary was built from).
    #[arg(long)]
    pub pdk: Option<PathBuf>,
}

/// The pdk of the checkout this binary was built from.
fn default_pdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/pdk")
}

fn check_name(name: &str) -> Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!("`{name}` is not a usable crate name: use lowercase letters, digits, `-` and `_`, starting with a letter (e.g. `sms-acme`)");
    }
    Ok(())
}

/// A path as TOML / Rust string text (forward slashes, quotes escaped).
fn quoted(path: &Path) -> String {
    let text = path.display().to_string().replace('\\', "/");
    format!("{:?}", text)
}

/// The files of the crate, relative to its directory.
pub fn files(name: &str, kind: Kind, pdk: &Path) -> Result<Vec<(&'static str, String)>> {
    let pdk = pdk.canonicalize().with_context(|| {
        format!(
            "herald-pdk not found at {}: pass --pdk PATH to a Herald checkout's plugins/pdk",
            pdk.display()
        )
    })?;
    if !pdk.join("Cargo.toml").is_file() {
        bail!(
            "{} has no Cargo.toml: pass --pdk PATH to a Herald checkout's plugins/pdk",
            pdk.display()
        );
    }
    let wit = pdk.join("../../wit").canonicalize().with_context(|| {
        format!(
            "the WIT files next to the pdk ({}/../../wit) are missing",
            pdk.display()
        )
    })?;
    let lib_name = name.replace('-', "_");
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{lib}}", &lib_name)
            .replace("{{pdk}}", &quoted(&pdk))
            .replace("{{wit}}", &quoted(&wit))
    };
    let mut out = vec![
        (".cargo/config.toml", CARGO_CONFIG.to_string()),
        (".gitignore", "/target\n".to_string()),
    ];
    match kind {
        Kind::Channel => {
            out.push(("Cargo.toml", fill(CHANNEL_CARGO)));
            out.push(("src/lib.rs", fill(CHANNEL_LIB)));
            out.push(("settings.toml", fill(CHANNEL_SETTINGS)));
            out.push(("message.json", fill(CHANNEL_MESSAGE)));
            out.push(("fixtures.json", fill(CHANNEL_FIXTURES)));
            out.push(("README.md", fill(CHANNEL_README)));
        }
        Kind::Targeting => {
            out.push(("Cargo.toml", fill(TARGETING_CARGO)));
            out.push(("src/lib.rs", fill(TARGETING_LIB)));
            out.push(("settings.toml", fill(TARGETING_SETTINGS)));
            out.push(("message.json", fill(TARGETING_MESSAGE)));
            out.push(("README.md", fill(TARGETING_README)));
        }
    }
    Ok(out)
}

/// Run `herald plugin new`.
pub fn run(args: NewArgs) -> Result<ExitCode> {
    check_name(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} already exists and is not empty; pick another --dir (nothing was written)",
            dir.display()
        );
    }
    let pdk = args.pdk.clone().unwrap_or_else(default_pdk);
    let files = files(&args.name, args.kind, &pdk)?;
    for (rel, text) in &files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let lib = args.name.replace('-', "_");
    let message = match args.kind {
        Kind::Channel => "--message message.json --http fixtures.json",
        Kind::Targeting => "--message message.json",
    };
    println!(
        "created {} ({} plugin)",
        dir.display(),
        match args.kind {
            Kind::Channel => "channel",
            Kind::Targeting => "targeting",
        }
    );
    println!("next:");
    println!("  cd {}", dir.display());
    println!("  cargo build --target wasm32-wasip2 --release");
    println!(
        "  herald plugin test target/wasm32-wasip2/release/{lib}.wasm --settings settings.toml {message}"
    );
    Ok(ExitCode::SUCCESS)
}

const CARGO_CONFIG: &str = r#"# Herald runs a fresh instance of the plugin per call. A 128 KiB stack (instead
# of Rust's default 1 MiB) keeps the memory a call touches in the first pages,
# which the host keeps resident between calls.
[target.wasm32-wasip2]
rustflags = ["-C", "link-arg=-zstack-size=131072"]
"#;

const CHANNEL_CARGO: &str = r#"[package]
name = "{{name}}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
herald-pdk = { path = {{pdk}} }
serde_json = "1"

[dev-dependencies]
# herald_pdk::testing for the unit tests (never in the .wasm).
herald-pdk = { path = {{pdk}}, features = ["testing"] }

[profile.release]
opt-level = "s"
strip = "debuginfo"

# A crate of its own, not a member of an enclosing workspace.
[workspace]
"#;

const CHANNEL_LIB: &str = r#"//! `{{name}}`: a Herald channel plugin that sends each reminder as a JSON
//! `POST` to the provider URL in the `url` setting and returns the
//! provider's message id as the receipt.

use herald_pdk::http::{Request, Response};
use herald_pdk::{
    AddressKind, CallbackError, CallbackRequest, CallbackResult, Guest, Message, PluginInfo,
    Receipt, SendError, Setting, SettingSpec, Settings,
};
use serde_json::{json, Value};

struct Plugin;

impl Guest for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            // Herald routes a reminder here only when the customer has a phone number.
            address: AddressKind::Phone,
            accepts_callbacks: false,
            settings: vec![
                SettingSpec::required("url", "Provider endpoint messages are posted to; its origin must be in allowed_hosts"),
                SettingSpec::optional("api_key", "Sent as `Authorization: Bearer ...`").secret(),
            ],
        }
    }

    fn send(settings: Vec<Setting>, message: Message) -> Result<Receipt, SendError> {
        let settings = Settings::new(&settings);
        let url = settings.required("url")?;
        let Some(to) = message.recipient.phone.as_deref() else {
            return Err(SendError::Permanent(format!(
                "customer `{}` has no phone number",
                message.recipient.customer_id
            )));
        };
        let body = json!({ "to": to, "text": message.text });
        let mut request = Request::post_json(url, &body)
            // The same key on every attempt at this reminder: the provider
            // drops a duplicate after a retry.
            .header("Idempotency-Key", message.idempotency_key.as_str());
        if let Some(key) = settings.get("api_key") {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        // Network failures become retryable errors, a host refusal permanent.
        receipt(&request.send()?)
    }

    fn handle_callback(
        _settings: Vec<Setting>,
        _request: CallbackRequest,
    ) -> Result<CallbackResult, CallbackError> {
        herald_pdk::no_callbacks()
    }
}

herald_pdk::export!(Plugin);

/// The provider's answer to a send: its message id, or why there is none.
fn receipt(response: &Response) -> Result<Receipt, SendError> {
    // 408, 429 and 5xx are retryable (with Retry-After), other non-2xx permanent.
    response.error_for_status()?;
    let answer: Value = response.json().map_err(|e| {
        SendError::Permanent(format!("the provider's answer is not JSON ({e}): {}", response.excerpt()))
    })?;
    match answer["id"].as_str() {
        Some(id) => Ok(Receipt {
            provider_message_id: id.to_string(),
        }),
        None => Err(SendError::Permanent(format!(
            "the provider's answer has no `id`: {}",
            response.excerpt()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_pdk::testing::{permanent, response, retryable};

    #[test]
    fn provider_answers() {
        let sent = receipt(&response(200).with_json(&json!({ "id": "msg-0001" })));
        assert_eq!(sent.unwrap().provider_message_id, "msg-0001");
        let busy = response(429).with_header("Retry-After", "5");
        assert_eq!(retryable(receipt(&busy)).retry_after_ms, Some(5000));
        assert!(permanent(receipt(&response(200).with_text("<html>"))).contains("not JSON"));
    }
}
"#;

const CHANNEL_SETTINGS: &str = r#"# As a [channels.NAME] section of herald.toml (without `plugin`).
allowed_hosts = ["https://sms.example.com"]

[settings]
url = "https://sms.example.com/v1/messages"
api_key = "test-key-123"   # in herald.toml: api_key = { env = "SMS_API_KEY" }
"#;

const CHANNEL_MESSAGE: &str = r#"{
  "idempotency_key": "herald:c001:welcome:created",
  "rule": "welcome",
  "recipient": {
    "customer_id": "c001",
    "name": "Ada",
    "phone": "+15551234567",
    "timezone": "Europe/London"
  },
  "subject": "Welcome",
  "text": "Welcome to Acme, Ada!"
}
"#;

const CHANNEL_FIXTURES: &str = r#"[
  {
    "method": "POST",
    "url": "https://sms.example.com/v1/messages",
    "body": { "contains": ["\"to\":\"+15551234567\"", "Welcome to Acme"] },
    "response": { "status": 200, "headers": { "content-type": "application/json" }, "body": { "id": "msg-0001" } }
  }
]
"#;

const CHANNEL_README: &str = r#"# {{name}}

A Herald channel plugin: each reminder goes out as a JSON `POST` of
`{"to": phone, "text": text}` to the `url` setting, with an `Idempotency-Key`
header and, when `api_key` is set, `Authorization: Bearer <api_key>`.

```sh
cargo build --target wasm32-wasip2 --release
herald plugin test target/wasm32-wasip2/release/{{lib}}.wasm \
  --settings settings.toml --message message.json --http fixtures.json
herald plugin inspect target/wasm32-wasip2/release/{{lib}}.wasm
```

`fixtures.json` answers the plugin's HTTP requests (nothing reaches the
network); add one per provider answer you want to test and assert the outcome
with `--expect sent|retryable|permanent|unsubscribed`. See Herald's
docs/plugin-guide.md.
"#;

const TARGETING_CARGO: &str = r#"[package]
name = "{{name}}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
# Targeting plugins use the WIT bindings directly (the pdk covers channel plugins).
wit-bindgen = "0.61"

[profile.release]
opt-level = "s"
strip = "debuginfo"

# A crate of its own, not a member of an enclosing workspace.
[workspace]
"#;

const TARGETING_LIB: &str = r#"//! `{{name}}`: a Herald targeting plugin. A due reminder goes out only when
//! the customer has been quiet (no event) for at least `quiet_days` days; the
//! template then gets `target.days_quiet`.

wit_bindgen::generate!({
    path: {{wit}},
    world: "herald:plugin/targeting-plugin",
});

use exports::herald::plugin::targeting::{CustomerView, Decision, Event, Guest, Variable};
use herald::plugin::types::{AddressKind, PluginInfo, Setting, SettingSpec};

const DAY_MS: i64 = 86_400_000;

struct Plugin;

impl Guest for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            address: AddressKind::None,
            settings: vec![SettingSpec {
                key: "quiet_days".to_string(),
                description: "Days without any event before the reminder goes out (default 7)".to_string(),
                secret: false,
                required: false,
            }],
            accepts_callbacks: false,
        }
    }

    fn evaluate(settings: Vec<Setting>, customer: CustomerView, history: Vec<Event>, now: i64) -> Decision {
        let quiet_days = match settings.iter().find(|s| s.key == "quiet_days") {
            None => 7,
            Some(s) => match s.value.trim().parse::<i64>() {
                Ok(n) if n >= 0 => n,
                _ => return Decision::Skip(format!("quiet_days `{}` is not a whole number of days", s.value)),
            },
        };
        // Events come oldest first; the customer's sign-up counts as activity.
        let last = history.last().map_or(customer.created_at, |e| e.at);
        let days_quiet = (now - last).div_euclid(DAY_MS);
        if days_quiet < quiet_days {
            return Decision::Skip(format!("active {days_quiet} day(s) ago; waits for {quiet_days} quiet days"));
        }
        Decision::Send(vec![Variable {
            name: "days_quiet".to_string(),
            value_json: days_quiet.to_string(),
        }])
    }
}

export!(Plugin);
"#;

const TARGETING_SETTINGS: &str = r#"# As the [rules.targeting] section of a rule in herald.toml (without `plugin`).
[settings]
quiet_days = 7
"#;

const TARGETING_MESSAGE: &str = r#"{
  "customer": {
    "external_id": "c001",
    "timezone": "Europe/London",
    "attributes": { "plan": "pro" },
    "created_at": "2026-01-01T09:00:00Z"
  },
  "history": [
    { "kind": "login", "at": "2026-02-20T08:00:00Z", "properties": {} }
  ],
  "now": "2026-03-02T10:00:00Z"
}
"#;

const TARGETING_README: &str = r#"# {{name}}

A Herald targeting plugin: a due reminder goes out only after `quiet_days`
days without an event; templates get `target.days_quiet`.

```sh
cargo build --target wasm32-wasip2 --release
herald plugin test target/wasm32-wasip2/release/{{lib}}.wasm \
  --settings settings.toml --message message.json --expect send
herald plugin inspect target/wasm32-wasip2/release/{{lib}}.wasm
```
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["sms-acme", "a", "push_x2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Sms", "1sms", "sms acme", "sms/../x"] {
            let err = check_name(bad).unwrap_err().to_string();
            assert!(err.contains("lowercase letters"), "{err}");
        }
    }

    #[test]
    fn files_point_at_the_pdk_and_wit() {
        let files = files("sms-acme", Kind::Channel, &default_pdk()).unwrap();
        let cargo = &files.iter().find(|(p, _)| *p == "Cargo.toml").unwrap().1;
        let pdk = default_pdk().canonicalize().unwrap();
        assert!(
            cargo.contains(&format!("herald-pdk = {{ path = {} }}", quoted(&pdk))),
            "{cargo}"
        );
        assert!(cargo.contains("name = \"sms-acme\"") && cargo.contains("cdylib"));
        for (path, text) in &files {
            assert!(!text.contains("{{"), "{path} has an unfilled placeholder");
        }
        let files = super::files("quiet", Kind::Targeting, &default_pdk()).unwrap();
        let lib = &files.iter().find(|(p, _)| *p == "src/lib.rs").unwrap().1;
        assert!(lib.contains("/wit\""), "{lib}");
        let err = super::files("x", Kind::Channel, Path::new("/nonexistent/pdk")).unwrap_err();
        assert!(err.to_string().contains("--pdk"), "{err}");
    }
}
