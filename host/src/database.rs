//! Where a deployment's database is, as an operator writes it (`[database]
//! path` or `url` in `herald.toml`, `--db` on the command line): a file path
//! or `sqlite:` URL for the embedded SQLite, a `postgres://` (or
//! `postgresql://`) URL for PostgreSQL. Any other `scheme://` is an error
//! that says what Herald takes, never a file named after the URL. Owns the
//! parsing and the printable form (passwords masked); opens nothing (the
//! store does) and imports nothing of Herald.

use anyhow::{bail, Result};
use std::fmt;
use std::path::{Path, PathBuf};

/// A database location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The embedded database: a SQLite file.
    Embedded(PathBuf),
    /// A database server: a PostgreSQL connection URL.
    Server(String),
}

impl Location {
    /// Read `text`; a relative file path is taken relative to `base` (the
    /// config file's directory, or the working directory for `--db`).
    pub fn parse(text: &str, base: &Path) -> Result<Location> {
        let text = text.trim();
        if text.is_empty() {
            bail!(
                "the database location is empty: give a file path (herald.db) or a postgres:// URL"
            );
        }
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Ok(Location::Server(text.to_string()));
        }
        if let Some(rest) = lower.strip_prefix("sqlite:") {
            let offset = text.len() - rest.len();
            let path = text[offset..].trim_start_matches("//");
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() || path == ":memory:" {
                bail!("`{text}`: give the SQLite file's path, e.g. sqlite://data/herald.db");
            }
            return Ok(Location::Embedded(base.join(path)));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            let looks_like_scheme = !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
            if looks_like_scheme {
                bail!(
                    "unknown database URL scheme `{scheme}://` in `{}`: Herald takes a SQLite file path (or sqlite://PATH) or a PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE)",
                    masked(text)
                );
            }
        }
        Ok(Location::Embedded(base.join(text)))
    }

    /// The SQLite file, if this is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Location::Embedded(path) => Some(path),
            Location::Server(_) => None,
        }
    }

    /// True for a database server (PostgreSQL), which a fleet of nodes
    /// may share.
    pub fn is_server(&self) -> bool {
        matches!(self, Location::Server(_))
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Embedded(path) => write!(f, "{}", path.display()),
            Location::Server(url) => write!(f, "{}", masked(url)),
        }
    }
}

/// `url` with the password between `:` and `@` of the authority replaced
/// by `***`, and any `password=` query value too.
fn masked(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(start) = out.find("://").map(|i| i + 3) {
        let authority_end = out[start..]
            .find(['/', '?'])
            .map_or(out.len(), |i| start + i);
        if let Some(at) = out[start..authority_end].rfind('@').map(|i| start + i) {
            if let Some(colon) = out[start..at].find(':').map(|i| start + i) {
                out.replace_range(colon + 1..at, "***");
            }
        }
    }
    if let Some(i) = out.find("password=") {
        let from = i + "password=".len();
        let to = out[from..].find('&').map_or(out.len(), |j| from + j);
        out.replace_range(from..to, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_urls_and_unknown_schemes() {
        let base = Path::new("/etc/herald");
        assert_eq!(
            Location::parse("herald.db", base).unwrap(),
            Location::Embedded("/etc/herald/herald.db".into())
        );
        assert_eq!(
            Location::parse("/var/lib/h.db", base).unwrap(),
            Location::Embedded("/var/lib/h.db".into())
        );
        assert_eq!(
            Location::parse("sqlite://data/h.db", base).unwrap(),
            Location::Embedded("/etc/herald/data/h.db".into())
        );
        assert_eq!(
            Location::parse("sqlite:/var/h.db?mode=rwc", base).unwrap(),
            Location::Embedded("/var/h.db".into())
        );
        let pg = "postgres://herald:s3cret@db:5432/herald";
        assert_eq!(
            Location::parse(pg, base).unwrap(),
            Location::Server(pg.into())
        );
        assert!(Location::parse("postgresql://db/h", base)
            .unwrap()
            .is_server());
        let e = Location::parse("mysql://root:pw@db/h", base)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown database URL scheme `mysql://`"), "{e}");
        assert!(!e.contains("pw"), "the password is masked: {e}");
        assert!(Location::parse("  ", base).is_err());
    }

    #[test]
    fn passwords_are_masked_when_printed() {
        let shown = Location::Server("postgres://u:p4ss@h:5/d?password=x&sslmode=require".into())
            .to_string();
        assert_eq!(shown, "postgres://u:***@h:5/d?password=***&sslmode=require");
        assert_eq!(
            Location::Server("postgres://h/d".into()).to_string(),
            "postgres://h/d"
        );
    }
}
