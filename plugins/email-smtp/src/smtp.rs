//! The SMTP client side of one submission (RFC 5321, RFC 3207 STARTTLS,
//! RFC 4954 AUTH): reading and parsing (multi-line) replies, the EHLO
//! capabilities, the command sequence greeting → EHLO (HELO when EHLO is
//! refused) → STARTTLS → 220 → the upgrade → EHLO again (capabilities
//! re-read) → AUTH PLAIN/LOGIN (never over a clear connection unless
//! allowed) → MAIL FROM → RCPT TO → DATA → `.` → QUIT, and the
//! classification of every reply and I/O failure as retryable or permanent.
//!
//! It works over any `Read + Write` stream that can be upgraded
//! ([`Secure`]), so the unit tests drive whole conversations against
//! scripted server replies. The TLS itself is the host's.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use std::io::{self, BufRead, BufReader, Read, Write};

/// Longest reply line accepted (RFC 5321 allows 512 octets; be generous).
const MAX_LINE: u64 = 8192;
/// Most lines accepted in one multi-line reply.
const MAX_LINES: usize = 512;

/// What the operator is told when the relay insists on TLS and the channel
/// said `tls = "none"`.
pub const TLS_HINT: &str = "the SMTP server requires TLS (STARTTLS): set tls = \"starttls\" (the default on every port but 465) in the channel's settings";

/// How the connection is secured (the `tls` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Clear text, upgraded with STARTTLS before anything else; a server
    /// that does not offer it is refused.
    Starttls,
    /// TLS from the first byte (the connection is encrypted when opened).
    Implicit,
    /// Clear text throughout.
    None,
}

/// A stream that can be upgraded to TLS in place.
pub trait Secure {
    /// Do the TLS handshake now.
    fn start_tls(&mut self) -> Result<(), Failure>;
    /// Whether the stream is encrypted.
    fn is_encrypted(&self) -> bool;
}

impl<T: Secure> Secure for &mut T {
    fn start_tls(&mut self) -> Result<(), Failure> {
        (**self).start_tls()
    }
    fn is_encrypted(&self) -> bool {
        (**self).is_encrypted()
    }
}

/// Why a submission did not go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Try again later (4xx replies, dropped connections, timeouts).
    Retry(String),
    /// Will not succeed as configured (5xx replies, refused credentials, TLS required).
    Permanent(String),
}

/// One SMTP reply: its code and the text of each line (without the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// `550 5.1.1 User unknown`, lines joined by ` / `.
    pub fn summary(&self) -> String {
        let text: Vec<&str> = self
            .lines
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect();
        if text.is_empty() {
            self.code.to_string()
        } else {
            format!("{} {}", self.code, text.join(" / "))
        }
    }

    fn mentions(&self, needle: &str) -> bool {
        self.lines
            .iter()
            .any(|l| l.to_ascii_uppercase().contains(needle))
    }
}

/// One parsed reply line: code, whether more lines follow, text.
pub fn parse_line(line: &str) -> Result<(u16, bool, &str), String> {
    let line = line.trim_end_matches(['\r', '\n']);
    let bytes = line.as_bytes();
    if bytes.len() < 3
        || !bytes[..3].iter().all(u8::is_ascii_digit)
        || !(b'2'..=b'5').contains(&bytes[0])
    {
        return Err(format!("not an SMTP reply line: {:?}", snippet(line)));
    }
    let code: u16 = line[..3].parse().expect("three digits");
    match bytes.get(3) {
        None => Ok((code, false, "")),
        Some(b' ') => Ok((code, false, &line[4..])),
        Some(b'-') => Ok((code, true, &line[4..])),
        Some(_) => Err(format!("not an SMTP reply line: {:?}", snippet(line))),
    }
}

fn snippet(text: &str) -> String {
    let mut s: String = text.chars().take(80).collect();
    if text.chars().count() > 80 {
        s.push('…');
    }
    s
}

/// What the server offers after EHLO.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// SASL mechanisms from `AUTH …` (and the old `AUTH=…` form), uppercase.
    pub auth: Vec<String>,
    pub starttls: bool,
    /// Every extension keyword, uppercase.
    pub keywords: Vec<String>,
}

impl Capabilities {
    /// Parses the lines of a 250 reply to EHLO (the first line is the greeting).
    pub fn parse(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut parts = line.split([' ', '=']).filter(|p| !p.is_empty());
            let Some(keyword) = parts.next() else {
                continue;
            };
            let keyword = keyword.to_ascii_uppercase();
            if keyword == "AUTH" {
                for mech in parts {
                    let mech = mech.to_ascii_uppercase();
                    if !caps.auth.contains(&mech) {
                        caps.auth.push(mech);
                    }
                }
            } else if keyword == "STARTTLS" {
                caps.starttls = true;
            }
            if !caps.keywords.contains(&keyword) {
                caps.keywords.push(keyword);
            }
        }
        caps
    }
}

/// How to log in to the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth<'a> {
    None,
    Plain {
        username: &'a str,
        password: &'a str,
    },
    Login {
        username: &'a str,
        password: &'a str,
    },
}

/// One submission.
#[derive(Debug, Clone)]
pub struct Submission<'a> {
    pub helo: &'a str,
    pub tls: Tls,
    pub auth: Auth<'a>,
    /// Whether the login may go over a connection without TLS.
    pub plaintext_auth: bool,
    pub from: &'a str,
    pub to: &'a str,
    /// The dot-stuffed message, ending with `.` CRLF.
    pub data: &'a [u8],
}

/// What the relay said when it took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The reply to the final `.`, e.g. `250 2.0.0 Ok: queued as 4Fq1x`.
    pub reply: String,
}

/// An SMTP conversation over `stream`.
pub struct Session<S: Read + Write> {
    stream: BufReader<S>,
    server: String,
}

impl<S: Read + Write> Session<S> {
    pub fn new(stream: S, server: &str) -> Self {
        Session {
            stream: BufReader::new(stream),
            server: server.to_string(),
        }
    }

    /// Reads one complete (possibly multi-line) reply.
    pub fn read_reply(&mut self, waiting_for: &str) -> Result<Reply, Failure> {
        let mut lines = Vec::new();
        let mut code = None;
        loop {
            let mut buf = Vec::new();
            let n = (&mut self.stream)
                .take(MAX_LINE)
                .read_until(b'\n', &mut buf)
                .map_err(|e| self.io_failure(&e, &format!("waiting for {waiting_for}")))?;
            if n == 0 || !buf.ends_with(b"\n") {
                if buf.len() as u64 >= MAX_LINE {
                    return Err(Failure::Permanent(format!(
                        "{} sent a reply line longer than {MAX_LINE} bytes while we waited for {waiting_for}: is it an SMTP server?",
                        self.server
                    )));
                }
                return Err(Failure::Retry(format!(
                    "{} closed the connection while we waited for {waiting_for} (will retry)",
                    self.server
                )));
            }
            let line = String::from_utf8_lossy(&buf);
            let (c, more, text) = parse_line(&line).map_err(|e| {
                Failure::Permanent(format!(
                    "{} answered {waiting_for} with something other than SMTP ({e}): check `host` and `port`",
                    self.server
                ))
            })?;
            if *code.get_or_insert(c) != c {
                return Err(Failure::Permanent(format!(
                    "{} mixed reply codes {} and {c} in one reply to {waiting_for}",
                    self.server,
                    code.unwrap_or(c)
                )));
            }
            lines.push(text.to_string());
            if !more {
                return Ok(Reply { code: c, lines });
            }
            if lines.len() >= MAX_LINES {
                return Err(Failure::Permanent(format!(
                    "{} sent a reply of more than {MAX_LINES} lines to {waiting_for}",
                    self.server
                )));
            }
        }
    }

    /// Sends `line` (no CRLF) and reads the reply. `what` names the command
    /// in messages; it never contains credentials.
    fn command(&mut self, line: &str, what: &str) -> Result<Reply, Failure> {
        self.write(format!("{line}\r\n").as_bytes(), what)?;
        self.read_reply(&format!("the reply to {what}"))
    }

    fn write(&mut self, bytes: &[u8], what: &str) -> Result<(), Failure> {
        let stream = self.stream.get_mut();
        stream
            .write_all(bytes)
            .and_then(|()| stream.flush())
            .map_err(|e| self.io_failure(&e, &format!("sending {what}")))
    }

    fn io_failure(&self, err: &io::Error, during: &str) -> Failure {
        let server = &self.server;
        match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Failure::Retry(format!(
                "{server} did not answer in time ({during}) (will retry)"
            )),
            _ => Failure::Retry(format!(
                "connection to {server} failed while {during}: {err} (will retry)"
            )),
        }
    }

    /// Best-effort polite goodbye; errors are ignored.
    fn quit(&mut self) {
        if self.write(b"QUIT\r\n", "QUIT").is_ok() {
            let _ = self.read_reply("the reply to QUIT");
        }
    }
}

impl<S: Read + Write + Secure> Session<S> {
    /// The whole submission. On failure after the greeting, QUIT is sent
    /// before returning.
    pub fn submit(mut self, sub: &Submission) -> Result<Accepted, Failure> {
        let result = self.transaction(sub);
        if let Err(Failure::Permanent(_) | Failure::Retry(_)) = &result {
            self.quit();
        }
        result
    }

    fn transaction(&mut self, sub: &Submission) -> Result<Accepted, Failure> {
        let greeting = self.read_reply("the greeting")?;
        if greeting.code != 220 {
            return Err(self.refused("the connection", &greeting));
        }

        let mut caps = self.hello(sub.helo)?;
        if sub.tls == Tls::Starttls {
            caps = self.start_tls(sub.helo, &caps)?;
        }

        self.authenticate(sub, &caps)?;

        let mail = self.command(&format!("MAIL FROM:<{}>", sub.from), "MAIL FROM")?;
        if mail.code != 250 {
            return Err(self.refused(&format!("the sender <{}> (MAIL FROM)", sub.from), &mail));
        }
        let rcpt = self.command(&format!("RCPT TO:<{}>", sub.to), "RCPT TO")?;
        if !matches!(rcpt.code, 250 | 251) {
            return Err(self.refused(&format!("the recipient <{}> (RCPT TO)", sub.to), &rcpt));
        }
        let data = self.command("DATA", "DATA")?;
        if data.code != 354 {
            return Err(self.refused("DATA", &data));
        }
        self.write(sub.data, "the message")?;
        let done = self.read_reply("the reply to the end of the message")?;
        if done.code != 250 {
            return Err(self.refused("the message", &done));
        }
        // The message is taken: whatever QUIT does no longer matters.
        self.quit();
        Ok(Accepted {
            reply: done.summary(),
        })
    }

    /// EHLO (HELO when EHLO is refused): what the server offers.
    fn hello(&mut self, helo: &str) -> Result<Capabilities, Failure> {
        let ehlo = self.command(&format!("EHLO {helo}"), "EHLO")?;
        match ehlo.code {
            250 => Ok(Capabilities::parse(&ehlo)),
            500..=599 => {
                let reply = self.command(&format!("HELO {helo}"), "HELO")?;
                if reply.code != 250 {
                    return Err(self.refused("HELO", &reply));
                }
                Ok(Capabilities::default())
            }
            _ => Err(self.refused("EHLO", &ehlo)),
        }
    }

    /// STARTTLS, the upgrade, and EHLO again: what the server offers over
    /// TLS (RFC 3207: nothing learnt before the upgrade is kept).
    fn start_tls(&mut self, helo: &str, caps: &Capabilities) -> Result<Capabilities, Failure> {
        let server = self.server.clone();
        if !caps.starttls {
            return Err(Failure::Permanent(format!(
                "{server} does not offer STARTTLS (its EHLO reply does not list it) and this channel requires TLS (tls = \"starttls\", the default): nothing was sent. Use the relay's implicit-TLS port with tls = \"implicit\" (usually 465), or, only for a relay on a trusted network, set tls = \"none\""
            )));
        }
        let reply = self.command("STARTTLS", "STARTTLS")?;
        match reply.code {
            220 => {}
            400..=499 => {
                return Err(Failure::Retry(format!(
                    "{server} cannot start TLS now: {} (will retry)",
                    reply.summary()
                )))
            }
            _ => return Err(self.refused("STARTTLS", &reply)),
        }
        if !self.stream.buffer().is_empty() {
            return Err(Failure::Permanent(format!(
                "{server} sent more after agreeing to STARTTLS, before the TLS handshake: refusing to go on (commands injected into the clear-text part of the connection)"
            )));
        }
        self.stream.get_mut().start_tls()?;
        self.hello(helo)
    }

    fn authenticate(&mut self, sub: &Submission, caps: &Capabilities) -> Result<(), Failure> {
        let (mechanism, username, password) = match sub.auth {
            Auth::None => return Ok(()),
            Auth::Plain { username, password } => ("PLAIN", username, password),
            Auth::Login { username, password } => ("LOGIN", username, password),
        };
        if !self.stream.get_ref().is_encrypted() && !sub.plaintext_auth {
            return Err(Failure::Permanent(format!(
                "refusing to send the login to {} over a connection without TLS: set tls = \"starttls\" or \"implicit\" in the channel's settings, or, only for a relay on a trusted network (the same host, a private link), allow_plaintext_auth = \"true\"",
                self.server
            )));
        }
        if caps.auth.is_empty() {
            if caps.starttls {
                return Err(Failure::Permanent(format!(
                    "{} offers AUTH only after STARTTLS; {TLS_HINT}",
                    self.server
                )));
            }
            return Err(Failure::Permanent(format!(
                "{} does not offer AUTH (its EHLO reply lists no login mechanisms): set auth = \"none\" if the relay accepts mail from this host without a login",
                self.server
            )));
        }
        if !caps.auth.iter().any(|m| m == mechanism) {
            return Err(Failure::Permanent(format!(
                "{} does not offer AUTH {mechanism} (it offers {}): set `auth` to one of those this plugin supports (plain, login)",
                self.server,
                caps.auth.join(" ")
            )));
        }
        let reply = if mechanism == "PLAIN" {
            let token = B64.encode(format!("\0{username}\0{password}"));
            let first = self.command(&format!("AUTH PLAIN {token}"), "AUTH PLAIN")?;
            if first.code == 334 {
                // A server that ignores the initial response asks again.
                self.command(&token, "the AUTH PLAIN credentials")?
            } else {
                first
            }
        } else {
            let first = self.command("AUTH LOGIN", "AUTH LOGIN")?;
            if first.code != 334 {
                first
            } else {
                let second = self.command(&B64.encode(username), "the AUTH LOGIN username")?;
                if second.code != 334 {
                    second
                } else {
                    self.command(&B64.encode(password), "the AUTH LOGIN password")?
                }
            }
        };
        match reply.code {
            235 => Ok(()),
            535 => Err(Failure::Permanent(format!(
                "{} refused the login (AUTH {mechanism}): {}: check `username` and `password`",
                self.server,
                reply.summary()
            ))),
            _ => Err(self.refused(&format!("the login (AUTH {mechanism})"), &reply)),
        }
    }

    /// The failure for a negative or unexpected reply to `what`.
    fn refused(&self, what: &str, reply: &Reply) -> Failure {
        let server = &self.server;
        let said = reply.summary();
        if tls_required(reply) {
            return Failure::Permanent(format!("{server} refused {what}: {said}; {TLS_HINT}"));
        }
        match reply.code {
            400..=499 => Failure::Retry(format!("{server} deferred {what}: {said} (will retry)")),
            530 => Failure::Permanent(format!(
                "{server} refused {what}: {said}: the relay wants a login; set `username` and `password`"
            )),
            550 | 551 | 553 if what.contains("RCPT") => Failure::Permanent(format!(
                "{server} rejected {what}: {said}: the mailbox does not exist or is not accepted"
            )),
            500..=599 => Failure::Permanent(format!("{server} rejected {what}: {said}")),
            _ => Failure::Permanent(format!(
                "{server} gave an unexpected reply to {what}: {said}"
            )),
        }
    }
}

/// Whether a reply says the server wants STARTTLS first (530 5.7.0 Must
/// issue a STARTTLS command first; 538 encryption required).
fn tls_required(reply: &Reply) -> bool {
    reply.code == 538
        || ((reply.code == 530 || reply.code == 454 || reply.code == 554)
            && (reply.mentions("STARTTLS")
                || reply.mentions("TLS ")
                || reply.mentions("ENCRYPTION")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A stream that answers with the scripted replies and records what the
    /// client wrote; an upgrade is written down as `[TLS]` and fails with
    /// `handshake` when that is set.
    struct Scripted {
        replies: Cursor<Vec<u8>>,
        written: Vec<u8>,
        encrypted: bool,
        handshake: Option<Failure>,
        /// Every read returns all that is left, not one line as a server
        /// that waits for each command does.
        eager: bool,
    }

    impl Secure for Scripted {
        fn start_tls(&mut self) -> Result<(), Failure> {
            self.written.extend_from_slice(b"[TLS]\r\n");
            match self.handshake.clone() {
                Some(failure) => Err(failure),
                None => {
                    self.encrypted = true;
                    Ok(())
                }
            }
        }
        fn is_encrypted(&self) -> bool {
            self.encrypted
        }
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.eager {
                return self.replies.read(buf);
            }
            let mut line = Vec::new();
            (&mut self.replies)
                .take(buf.len() as u64)
                .read_until(b'\n', &mut line)?;
            buf[..line.len()].copy_from_slice(&line);
            Ok(line.len())
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A submission in clear text (`tls = "none"`, login allowed), as the
    /// conversations below were written for.
    fn run(replies: &str, auth: Auth) -> (Result<Accepted, Failure>, String) {
        run_with(replies, auth, Tls::None, true, None)
    }

    fn run_with(
        replies: &str,
        auth: Auth,
        tls: Tls,
        plaintext_auth: bool,
        handshake: Option<Failure>,
    ) -> (Result<Accepted, Failure>, String) {
        let stream = Scripted {
            replies: Cursor::new(replies.as_bytes().to_vec()),
            written: Vec::new(),
            encrypted: tls == Tls::Implicit,
            handshake,
            eager: false,
        };
        run_on(stream, auth, tls, plaintext_auth)
    }

    fn run_on(
        mut stream: Scripted,
        auth: Auth,
        tls: Tls,
        plaintext_auth: bool,
    ) -> (Result<Accepted, Failure>, String) {
        let sub = Submission {
            helo: "acme.example",
            tls,
            auth,
            plaintext_auth,
            from: "noreply@acme.example",
            to: "li@example.com",
            data: b"Subject: x\r\n\r\nbody\r\n.\r\n",
        };
        let result = Session::new(&mut stream, "relay:587").submit(&sub);
        (result, String::from_utf8(stream.written).unwrap())
    }

    /// Before TLS: STARTTLS and no AUTH; after: AUTH and no STARTTLS.
    const EHLO_CLEAR: &str = "250-relay\r\n250-SIZE 1000\r\n250 STARTTLS\r\n";
    const EHLO_TLS: &str = "250-relay\r\n250-SIZE 1000\r\n250 AUTH PLAIN LOGIN\r\n";
    const AFTER_AUTH: &str =
        "235 2.7.0 ok\r\n250 OK\r\n250 OK\r\n354 go\r\n250 2.0.0 queued\r\n221 Bye\r\n";

    #[test]
    fn starttls_upgrades_then_reads_the_capabilities_again() {
        let replies =
            format!("220 r\r\n{EHLO_CLEAR}220 2.0.0 Ready to start TLS\r\n{EHLO_TLS}{AFTER_AUTH}");
        let (result, written) = run_with(&replies, PLAIN, Tls::Starttls, false, None);
        assert_eq!(result.unwrap().reply, "250 2.0.0 queued");
        let token = B64.encode("\0user@acme.example\0s3cret-pw");
        assert!(
            written.starts_with(&format!(
                "EHLO acme.example\r\nSTARTTLS\r\n[TLS]\r\nEHLO acme.example\r\nAUTH PLAIN {token}\r\nMAIL FROM:"
            )),
            "{written}"
        );
        // Implicit TLS: encrypted from the start, no STARTTLS.
        let replies = format!("220 r\r\n{EHLO_TLS}{AFTER_AUTH}");
        let (result, written) = run_with(&replies, PLAIN, Tls::Implicit, false, None);
        assert!(result.is_ok(), "{result:?}");
        assert!(
            written.starts_with("EHLO acme.example\r\nAUTH PLAIN "),
            "{written}"
        );
    }

    #[test]
    fn starttls_is_never_skipped() {
        // Not offered: permanent, and neither login nor mail is sent.
        let replies = "220 r\r\n250-r\r\n250 AUTH PLAIN\r\n221 Bye\r\n";
        let (result, written) = run_with(replies, PLAIN, Tls::Starttls, true, None);
        assert!(
            matches!(&result, Err(Failure::Permanent(m)) if m.contains("does not offer STARTTLS") && m.contains("tls = \"implicit\"")),
            "{result:?}"
        );
        assert_eq!(written, "EHLO acme.example\r\nQUIT\r\n");
        // Refused for now: retry; refused for good: permanent.
        for (answer, retry) in [
            ("454 4.7.0 TLS not available", true),
            ("502 5.5.1 no", false),
        ] {
            let replies = format!("220 r\r\n{EHLO_CLEAR}{answer}\r\n221 Bye\r\n");
            let (result, written) = run_with(&replies, PLAIN, Tls::Starttls, false, None);
            assert_eq!(
                matches!(result, Err(Failure::Retry(_))),
                retry,
                "{answer}: {result:?}"
            );
            assert!(
                !written.contains("AUTH") && !written.contains("[TLS]"),
                "{written}"
            );
        }
        // A failed handshake ends it; nothing more is said in clear text.
        let replies = format!("220 r\r\n{EHLO_CLEAR}220 go ahead\r\n");
        let bad_cert = Failure::Permanent("the certificate of relay:587 is not trusted".into());
        let (result, written) = run_with(
            &replies,
            PLAIN,
            Tls::Starttls,
            false,
            Some(bad_cert.clone()),
        );
        assert_eq!(result, Err(bad_cert));
        assert!(
            !written.contains("AUTH") && !written.contains("MAIL"),
            "{written}"
        );
        // Bytes after the 220, before the handshake: an injection, refused.
        let replies = format!("220 r\r\n{EHLO_CLEAR}220 go ahead\r\n250 injected\r\n");
        let stream = Scripted {
            replies: Cursor::new(replies.into_bytes()),
            written: Vec::new(),
            encrypted: false,
            handshake: None,
            eager: true,
        };
        let (result, written) = run_on(stream, PLAIN, Tls::Starttls, false);
        assert!(
            matches!(&result, Err(Failure::Permanent(m)) if m.contains("sent more after agreeing to STARTTLS")),
            "{result:?}"
        );
        assert!(!written.contains("[TLS]"), "{written}");
    }

    #[test]
    fn no_login_in_clear_text_unless_allowed() {
        let replies = format!("{EHLO_OK}221 Bye\r\n");
        let (result, written) = run_with(&replies, PLAIN, Tls::None, false, None);
        assert!(
            matches!(&result, Err(Failure::Permanent(m)) if m.contains("without TLS") && m.contains("allow_plaintext_auth = \"true\"") && !m.contains("s3cret-pw")),
            "{result:?}"
        );
        assert_eq!(
            written, "EHLO acme.example\r\nQUIT\r\n",
            "no credentials sent"
        );
        // Without a login, clear text is the operator's choice.
        let replies = "220 r\r\n250 r\r\n250 OK\r\n250 OK\r\n354 go\r\n250 OK\r\n221 Bye\r\n";
        assert!(run_with(replies, Auth::None, Tls::None, false, None)
            .0
            .is_ok());
    }

    const EHLO_OK: &str = "220 relay ESMTP\r\n250-relay\r\n250-SIZE 33554432\r\n250-8BITMIME\r\n250-AUTH LOGIN PLAIN\r\n250 HELP\r\n";
    const PLAIN: Auth = Auth::Plain {
        username: "user@acme.example",
        password: "s3cret-pw",
    };

    #[test]
    fn reply_lines() {
        assert_eq!(
            parse_line("250-SIZE 100\r\n").unwrap(),
            (250, true, "SIZE 100")
        );
        assert_eq!(parse_line("250 OK\r\n").unwrap(), (250, false, "OK"));
        assert_eq!(parse_line("354\r\n").unwrap(), (354, false, ""));
        assert!(parse_line("HTTP/1.1 400 Bad Request\r\n").is_err());
        assert!(parse_line("25\r\n").is_err());
        assert!(parse_line("250+x\r\n").is_err());
        assert!(parse_line("650 x\r\n").is_err());
    }

    #[test]
    fn multi_line_replies_and_capabilities() {
        let mut s = Session::new(Cursor::new(EHLO_OK.as_bytes().to_vec()), "relay:587");
        let greeting = s.read_reply("greeting").unwrap();
        assert_eq!(greeting.summary(), "220 relay ESMTP");
        let ehlo = s.read_reply("ehlo").unwrap();
        assert_eq!(ehlo.code, 250);
        assert_eq!(
            ehlo.lines,
            [
                "relay",
                "SIZE 33554432",
                "8BITMIME",
                "AUTH LOGIN PLAIN",
                "HELP"
            ]
        );
        let caps = Capabilities::parse(&ehlo);
        assert_eq!(caps.auth, ["LOGIN", "PLAIN"]);
        assert!(!caps.starttls);
        assert!(caps.keywords.contains(&"8BITMIME".to_string()));
        // End of stream inside a reply is a dropped connection: retry.
        assert!(
            matches!(s.read_reply("more"), Err(Failure::Retry(m)) if m.contains("closed the connection"))
        );

        let old = Reply {
            code: 250,
            lines: vec!["x".into(), "AUTH=PLAIN login".into(), "STARTTLS".into()],
        };
        let caps = Capabilities::parse(&old);
        assert_eq!(caps.auth, ["PLAIN", "LOGIN"]);
        assert!(caps.starttls);

        let mut mixed = Session::new(Cursor::new(b"250-a\r\n251 b\r\n".to_vec()), "r");
        assert!(matches!(mixed.read_reply("x"), Err(Failure::Permanent(_))));
        let mut http = Session::new(Cursor::new(b"HTTP/1.1 400 Bad Request\r\n".to_vec()), "r");
        assert!(
            matches!(http.read_reply("x"), Err(Failure::Permanent(m)) if m.contains("check `host` and `port`"))
        );
    }

    #[test]
    fn full_submission_with_auth_plain() {
        let replies = format!(
            "{EHLO_OK}235 2.7.0 Authentication successful\r\n250 OK\r\n250 OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n250 2.0.0 Ok: queued as ABC123\r\n221 Bye\r\n"
        );
        let (result, written) = run(&replies, PLAIN);
        assert_eq!(result.unwrap().reply, "250 2.0.0 Ok: queued as ABC123");
        let token = B64.encode("\0user@acme.example\0s3cret-pw");
        assert_eq!(
            written,
            format!("EHLO acme.example\r\nAUTH PLAIN {token}\r\nMAIL FROM:<noreply@acme.example>\r\nRCPT TO:<li@example.com>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        );
    }

    #[test]
    fn auth_login_prompts() {
        let replies = format!(
            "{EHLO_OK}334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 2.7.0 Authentication successful\r\n250 OK\r\n250 OK\r\n354 go\r\n250 OK\r\n221 Bye\r\n"
        );
        let (result, written) = run(
            &replies,
            Auth::Login {
                username: "u",
                password: "p",
            },
        );
        assert!(result.is_ok(), "{result:?}");
        assert!(written.starts_with(&format!(
            "EHLO acme.example\r\nAUTH LOGIN\r\n{}\r\n{}\r\nMAIL FROM:",
            B64.encode("u"),
            B64.encode("p")
        )));
    }

    #[test]
    fn wrong_password_is_permanent_and_never_repeats_the_password() {
        let replies =
            format!("{EHLO_OK}535 5.7.8 Authentication credentials invalid\r\n221 Bye\r\n");
        let (result, written) = run(&replies, PLAIN);
        match result {
            Err(Failure::Permanent(m)) => {
                assert!(
                    m.contains("535 5.7.8 Authentication credentials invalid"),
                    "{m}"
                );
                assert!(m.contains("check `username` and `password`"), "{m}");
                assert!(!m.contains("s3cret-pw"));
                assert!(!m.contains(&B64.encode("\0user@acme.example\0s3cret-pw")));
            }
            other => panic!("{other:?}"),
        }
        assert!(written.ends_with("QUIT\r\n"));
    }

    #[test]
    fn missing_mechanism_is_refused_clearly() {
        let replies = "220 r\r\n250-r\r\n250 AUTH CRAM-MD5\r\n221 Bye\r\n";
        let (result, written) = run(replies, PLAIN);
        assert!(
            matches!(&result, Err(Failure::Permanent(m)) if m.contains("does not offer AUTH PLAIN (it offers CRAM-MD5)")),
            "{result:?}"
        );
        assert_eq!(
            written, "EHLO acme.example\r\nQUIT\r\n",
            "no credentials sent"
        );
        let replies = "220 r\r\n250-r\r\n250 STARTTLS\r\n221 Bye\r\n";
        let (result, _) = run(replies, PLAIN);
        assert!(
            matches!(&result, Err(Failure::Permanent(m)) if m.contains(TLS_HINT)),
            "{result:?}"
        );
        let replies = "220 r\r\n250 r\r\n221 Bye\r\n";
        let (result, _) = run(replies, PLAIN);
        assert!(
            matches!(&result, Err(Failure::Permanent(m)) if m.contains("auth = \"none\"")),
            "{result:?}"
        );
    }

    #[test]
    fn helo_fallback_when_ehlo_is_refused() {
        let replies = "220 old\r\n502 5.5.2 Error: command not recognized\r\n250 old\r\n250 OK\r\n250 OK\r\n354 go\r\n250 OK\r\n221 Bye\r\n";
        let (result, written) = run(replies, Auth::None);
        assert!(result.is_ok(), "{result:?}");
        assert!(written.starts_with("EHLO acme.example\r\nHELO acme.example\r\nMAIL FROM:"));
    }

    #[test]
    fn reply_classes() {
        let case = |rcpt: &str| {
            let replies = format!("220 r\r\n250 r\r\n250 OK\r\n{rcpt}\r\n221 Bye\r\n");
            run(&replies, Auth::None).0
        };
        match case("451 4.7.1 Greylisted, try again later") {
            Err(Failure::Retry(m)) => {
                assert!(m.contains("451 4.7.1 Greylisted, try again later"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        for code in [
            "550 5.1.1 User unknown",
            "551 5.1.6 moved",
            "553 5.1.3 bad address",
        ] {
            match case(code) {
                Err(Failure::Permanent(m)) => {
                    assert!(m.contains(code) && m.contains("<li@example.com>"), "{m}")
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            case("554 5.7.1 Relay access denied"),
            Err(Failure::Permanent(_))
        ));
        // STARTTLS demanded at MAIL FROM.
        let replies = "220 r\r\n250-r\r\n250 STARTTLS\r\n530 5.7.0 Must issue a STARTTLS command first\r\n221 Bye\r\n";
        match run(replies, Auth::None).0 {
            Err(Failure::Permanent(m)) => {
                assert!(m.contains("530 5.7.0 Must issue a STARTTLS command first"));
                assert!(m.contains(TLS_HINT));
            }
            other => panic!("{other:?}"),
        }
        // A busy server at the greeting, and one that hangs up on us.
        assert!(matches!(
            run("421 4.3.2 busy\r\n", Auth::None).0,
            Err(Failure::Retry(_))
        ));
        assert!(
            matches!(run("220 r\r\n", Auth::None).0, Err(Failure::Retry(m)) if m.contains("closed the connection"))
        );
        assert!(matches!(
            run("554 5.7.1 go away\r\n", Auth::None).0,
            Err(Failure::Permanent(_))
        ));
        // Rejected after the data: permanent, with the server's words.
        let replies = "220 r\r\n250 r\r\n250 OK\r\n250 OK\r\n354 go\r\n552 5.3.4 Message too big\r\n221 Bye\r\n";
        assert!(
            matches!(run(replies, Auth::None).0, Err(Failure::Permanent(m)) if m.contains("552 5.3.4 Message too big"))
        );
    }
}
