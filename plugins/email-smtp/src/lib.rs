//! `herald-email-smtp`: a channel plugin that submits each reminder as a MIME
//! email to the operator's SMTP relay, over a connection the host opens and
//! secures (`herald_pdk::tls`: only to the channel's `tcp://host:port`
//! allowed_hosts entries; the host verifies the relay's certificate against
//! the webpki roots and the channel's `tls_ca_file`).
//!
//! This file owns the settings (`host`, `port`, `tls`, `username`,
//! `password`, `auth`, `allow_plaintext_auth`, `from_email`, `from_name`,
//! `helo_name`, `reply_to`), their validation, the connection, and the
//! mapping of the outcome onto a receipt or a retryable / permanent error.
//! The message format lives in [`mime`], the SMTP conversation (STARTTLS
//! included) in [`smtp`]. `tls` defaults to implicit on port 465 and
//! STARTTLS on every other port; a login never crosses a clear-text
//! connection unless the operator sets `allow_plaintext_auth = "true"`.

mod mime;
mod smtp;

use herald_pdk::tls::{Connection, Mode, TlsError};
use herald_pdk::{
    AddressKind, Guest, Message, PluginInfo, Receipt, SendError, Setting, SettingSpec, Settings,
};
use smtp::Tls;
use std::time::{SystemTime, UNIX_EPOCH};

const DEFAULT_PORT: u16 = 587;
/// The port of SMTP submission over implicit TLS (RFC 8314).
const IMPLICIT_TLS_PORT: u16 = 465;
/// The setting that lets AUTH go over a clear-text connection.
const PLAINTEXT_AUTH: &str = "allow_plaintext_auth";

struct EmailSmtp;

impl Guest for EmailSmtp {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "email-smtp".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            address: AddressKind::Email,
            accepts_callbacks: false,
            settings: vec![
                SettingSpec::required(
                    "host",
                    "SMTP relay host name or IP; allowed_hosts must list tcp://HOST:PORT",
                ),
                SettingSpec::optional("port", "SMTP port (default 587)"),
                SettingSpec::optional(
                    "tls",
                    "`starttls`, `implicit` or `none` (default: implicit on port 465, else starttls); the host verifies the certificate (add a private CA with the channel's tls_ca_file)",
                ),
                SettingSpec::optional(
                    "username",
                    "Login for AUTH (leave out for a relay that needs none)",
                ),
                SettingSpec::optional("password", "Password for AUTH").secret(),
                SettingSpec::optional(
                    "auth",
                    "`plain`, `login` or `none` (default: plain when username is set, else none)",
                ),
                SettingSpec::optional(
                    PLAINTEXT_AUTH,
                    "`true` to let the login cross a connection without TLS (tls = \"none\"): only for a relay on a trusted network",
                ),
                SettingSpec::required("from_email", "Sender address (MAIL FROM and From:)"),
                SettingSpec::optional(
                    "from_name",
                    "Sender display name in From: (may be non-ASCII)",
                ),
                SettingSpec::optional(
                    "helo_name",
                    "Name sent with EHLO (default: the domain of from_email)",
                ),
                SettingSpec::optional("reply_to", "Reply-To: address"),
            ],
        }
    }

    fn handle_callback(
        _settings: Vec<Setting>,
        _request: herald_pdk::CallbackRequest,
    ) -> Result<herald_pdk::CallbackResult, herald_pdk::CallbackError> {
        herald_pdk::no_callbacks()
    }

    fn send(settings: Vec<Setting>, message: Message) -> Result<Receipt, SendError> {
        let config = Config::from_settings(Settings::new(&settings))?;
        let to = herald_pdk::non_empty(message.recipient.email.as_deref())
            .ok_or_else(|| SendError::Permanent("the customer has no email address".into()))?;
        mime::check_address(to)
            .map_err(|e| SendError::Permanent(format!("bad recipient address: {e}")))?;

        let message_id = mime::message_id(
            &message.idempotency_key,
            mime::domain_of(&config.from_email),
        );
        let boundary = mime::boundary(&message.idempotency_key);
        let email = mime::Email {
            from: mime::Mailbox {
                name: config.from_name.as_deref(),
                email: &config.from_email,
            },
            to: mime::Mailbox {
                name: message.recipient.name.as_deref(),
                email: to,
            },
            reply_to: config.reply_to.as_deref(),
            subject: &message.subject,
            text: &message.text,
            html: message.html.as_deref(),
            date: now_secs(message.sent_at),
            message_id: &message_id,
            boundary: &boundary,
            unsubscribe_url: message.unsubscribe_url.as_deref(),
            rule: &message.rule,
        };
        let data = mime::dot_stuff(&mime::build(&email));

        let server = format!("{}:{}", config.host, config.port);
        let mode = match config.tls {
            Tls::Implicit => Mode::Implicit,
            Tls::Starttls | Tls::None => Mode::Plain,
        };
        let stream = Relay(Connection::connect(&config.host, config.port, mode)?);
        let submission = smtp::Submission {
            helo: &config.helo_name,
            tls: config.tls,
            auth: config.auth(),
            plaintext_auth: config.plaintext_auth,
            from: &config.from_email,
            to,
            data: &data,
        };
        let accepted = smtp::Session::new(stream, &server)
            .submit(&submission)
            .map_err(|failure| match failure {
                smtp::Failure::Retry(reason) => SendError::retryable(reason, None),
                smtp::Failure::Permanent(reason) => SendError::Permanent(reason),
            })?;
        herald_pdk::log::debug(&format!(
            "{server} accepted {message_id}: {}",
            accepted.reply
        ));
        Ok(Receipt {
            provider_message_id: message_id
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string(),
        })
    }
}

/// The login to use, from the `auth` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthKind {
    None,
    Plain,
    Login,
}

/// The channel's settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Config {
    host: String,
    port: u16,
    tls: Tls,
    auth: AuthKind,
    plaintext_auth: bool,
    username: String,
    password: String,
    from_email: String,
    from_name: Option<String>,
    helo_name: String,
    reply_to: Option<String>,
}

impl Config {
    fn from_settings(s: Settings) -> Result<Config, SendError> {
        let bad = |msg: String| SendError::Permanent(msg);
        let opt = |key: &str| s.optional(key).map(str::to_string);
        let host = s.required("host")?.trim().to_string();
        if host.contains(['/', ' ', ':'])
            && !host.starts_with('[')
            && host.parse::<std::net::Ipv6Addr>().is_err()
        {
            return Err(bad(format!(
                "setting `host` = {host:?} must be a bare host name or IP (put the port in `port`)"
            )));
        }
        let host = host.trim_matches(['[', ']']).to_string();
        let port = match opt("port") {
            None => DEFAULT_PORT,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                bad(format!(
                    "setting `port` = {p:?} is not a TCP port number (1-65535)"
                ))
            })?,
        };
        let tls = match opt("tls").map(|t| t.to_ascii_lowercase()).as_deref() {
            None if port == IMPLICIT_TLS_PORT => Tls::Implicit,
            None | Some("starttls") => Tls::Starttls,
            Some("implicit") => Tls::Implicit,
            Some("none") => Tls::None,
            Some(other) => {
                return Err(bad(format!(
                    "setting `tls` = {other:?} is not one of starttls, implicit, none"
                )))
            }
        };
        let from_email = s.required("from_email")?.trim().to_string();
        mime::check_address(&from_email).map_err(|e| bad(format!("setting `from_email`: {e}")))?;
        let reply_to = opt("reply_to");
        if let Some(r) = &reply_to {
            mime::check_address(r).map_err(|e| bad(format!("setting `reply_to`: {e}")))?;
        }
        let helo_name =
            opt("helo_name").unwrap_or_else(|| mime::domain_of(&from_email).to_string());
        if !helo_name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad(format!(
                "setting `helo_name` = {helo_name:?} must be an ASCII host name without spaces"
            )));
        }
        let username = opt("username").unwrap_or_default();
        // The password is taken as written: spaces may be part of it.
        let password = s.get("password").unwrap_or_default().to_string();
        let auth = match opt("auth").map(|a| a.to_ascii_lowercase()).as_deref() {
            None if username.is_empty() => AuthKind::None,
            None | Some("plain") => AuthKind::Plain,
            Some("login") => AuthKind::Login,
            Some("none") => AuthKind::None,
            Some(other) => {
                return Err(bad(format!(
                    "setting `auth` = {other:?} is not one of plain, login, none"
                )))
            }
        };
        if auth != AuthKind::None && (username.is_empty() || password.is_empty()) {
            return Err(bad(
                "AUTH needs both `username` and `password` settings (or set auth = \"none\" for a relay that takes mail without a login)"
                    .to_string(),
            ));
        }
        let plaintext_auth = plaintext_auth_allowed(s)?;
        if auth != AuthKind::None && tls == Tls::None && !plaintext_auth {
            return Err(bad(format!(
                "refusing to send the SMTP login in clear text: with tls = \"none\", `username` and `password` would cross the network readable by anyone on the path; set tls = \"starttls\" or \"implicit\", use a relay that needs no login from this host (auth = \"none\"), or, only for a relay on a trusted network (the same host, a private link), set {PLAINTEXT_AUTH} = \"true\""
            )));
        }
        Ok(Config {
            host,
            port,
            tls,
            auth,
            plaintext_auth,
            username,
            password,
            from_email,
            from_name: opt("from_name"),
            helo_name,
            reply_to,
        })
    }

    fn auth(&self) -> smtp::Auth<'_> {
        let (username, password) = (self.username.as_str(), self.password.as_str());
        match self.auth {
            AuthKind::None => smtp::Auth::None,
            AuthKind::Plain => smtp::Auth::Plain { username, password },
            AuthKind::Login => smtp::Auth::Login { username, password },
        }
    }
}

/// Whether the operator let AUTH go over the clear-text connection.
fn plaintext_auth_allowed(s: Settings) -> Result<bool, SendError> {
    match s
        .optional(PLAINTEXT_AUTH)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(SendError::Permanent(format!(
            "setting `{PLAINTEXT_AUTH}` = {other:?} must be true or false"
        ))),
    }
}

/// Seconds since the epoch on the host's clock (virtual under simulate);
/// the message's `sent_at` if the clock is somehow before 1970.
fn now_secs(sent_at_ms: i64) -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(_) => sent_at_ms.div_euclid(1000),
    }
}

/// The host's connection to the relay, as the SMTP session's stream.
struct Relay(Connection);

impl std::io::Read for Relay {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl std::io::Write for Relay {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl smtp::Secure for Relay {
    fn start_tls(&mut self) -> Result<(), smtp::Failure> {
        self.0.start_tls().map_err(|e| match e {
            TlsError::Io(m) => smtp::Failure::Retry(format!("{m} (will retry)")),
            TlsError::Denied(m) | TlsError::Tls(m) => smtp::Failure::Permanent(m),
        })
    }
    fn is_encrypted(&self) -> bool {
        self.0.is_encrypted()
    }
}

herald_pdk::export!(EmailSmtp);

#[cfg(test)]
mod tests {
    use super::*;
    use herald_pdk::testing::{permanent, settings};

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from_settings(Settings::new(&settings(pairs))).unwrap()
    }

    /// The permanent error of settings `pairs`.
    fn err(pairs: &[(&str, &str)]) -> String {
        permanent(Config::from_settings(Settings::new(&settings(pairs))))
    }

    #[test]
    fn settings_defaults_and_checks() {
        let c = config(&[
            ("host", "mail.acme.example"),
            ("from_email", "noreply@acme.example"),
        ]);
        assert_eq!(c.port, 587);
        assert_eq!(c.auth, AuthKind::None);
        assert_eq!(c.helo_name, "acme.example");
        let c = config(&[
            ("host", "127.0.0.1"),
            ("port", "2525"),
            ("from_email", "noreply@acme.example"),
            ("username", "u"),
            ("password", "p w"),
            ("allow_plaintext_auth", "true"),
        ]);
        assert_eq!(
            (c.port, c.auth, c.password.as_str()),
            (2525, AuthKind::Plain, "p w")
        );
        let login = config(&[
            ("host", "h"),
            ("from_email", "a@b.c"),
            ("username", "u"),
            ("password", "p"),
            ("auth", "LOGIN"),
            ("allow_plaintext_auth", "TRUE"),
        ]);
        assert_eq!(login.auth, AuthKind::Login);

        assert!(err(&[("from_email", "a@b.c")]).contains("`host`"));
        assert!(err(&[("host", "h")]).contains("`from_email`"));
        assert!(err(&[("host", "h:25"), ("from_email", "a@b.c")]).contains("`port`"));
        assert!(
            err(&[("host", "h"), ("port", "99999"), ("from_email", "a@b.c")]).contains("1-65535")
        );
        assert!(err(&[("host", "h"), ("from_email", "not-an-address")]).contains("local@domain"));
        assert!(
            err(&[("host", "h"), ("from_email", "a@b.c"), ("auth", "cram-md5")])
                .contains("plain, login, none")
        );
        assert!(
            err(&[("host", "h"), ("from_email", "a@b.c"), ("auth", "plain")])
                .contains("`username` and `password`")
        );
        assert!(
            err(&[("host", "h"), ("from_email", "a@b.c"), ("username", "u")])
                .contains("`password`")
        );
        // TLS: implicit on 465, STARTTLS elsewhere, or as set.
        let tls = |pairs: &[(&str, &str)]| {
            let mut all = vec![("host", "h"), ("from_email", "a@b.c")];
            all.extend_from_slice(pairs);
            config(&all).tls
        };
        assert_eq!(tls(&[]), Tls::Starttls);
        assert_eq!(tls(&[("port", "25")]), Tls::Starttls);
        assert_eq!(tls(&[("port", "465")]), Tls::Implicit);
        assert_eq!(tls(&[("port", "465"), ("tls", "STARTTLS")]), Tls::Starttls);
        assert_eq!(tls(&[("tls", "implicit")]), Tls::Implicit);
        assert_eq!(tls(&[("tls", "none")]), Tls::None);
        assert!(
            err(&[("host", "h"), ("from_email", "a@b.c"), ("tls", "ssl")])
                .contains("starttls, implicit, none")
        );
        // A login over TLS needs nothing more.
        let login = [
            ("host", "h"),
            ("from_email", "a@b.c"),
            ("username", "u"),
            ("password", "p"),
        ];
        assert!(!config(&login).plaintext_auth);
        // Over a clear-text connection it needs the operator's say-so.
        let login = [
            ("host", "h"),
            ("from_email", "a@b.c"),
            ("username", "u"),
            ("password", "p"),
            ("tls", "none"),
        ];
        let refused = err(&login);
        assert!(
            refused.contains("clear text") && refused.contains("allow_plaintext_auth = \"true\""),
            "{refused}"
        );
        let mut maybe = login.to_vec();
        maybe.push(("allow_plaintext_auth", "yes"));
        assert!(err(&maybe).contains("true or false"));
        let mut no = login.to_vec();
        no.push(("allow_plaintext_auth", "false"));
        assert!(err(&no).contains("clear text"));
        let relay = config(&[("host", "h"), ("from_email", "a@b.c"), ("auth", "none")]);
        assert_eq!(relay.auth, AuthKind::None);
    }
}
