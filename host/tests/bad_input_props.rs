//! Property tests of bad input (issue "Proof under load and faults", bullet
//! "Bad input"): the CSV importer, the timeline reader, config + strategy
//! loading, template compilation and the API bodies of `herald serve` never
//! panic, and every refusal is a clear error that says where the problem is
//! (line number, key, rule and part), while good input next to it still goes
//! through. Everything runs in-process against the library; the API is the
//! real axum router served on a loopback port and spoken to over raw HTTP/1.1.
//!
//! Runs are seeded. Every failure message carries the seed; rerun the same
//! cases with `PROPTEST_RNG_SEED=<seed> cargo test -p herald --test bad_input_props`.
//! Failures are not persisted to files (proptest prints the minimal input).

use chrono::{TimeZone, Utc};
use herald::channels::Channels;
use herald::clock::VirtualClock;
use herald::config::Config;
use herald::engine::{Herald, OpenOptions};
use herald::import::import_csv;
use herald::plugin::http_policy::HttpMode;
use herald::render::{Part, Templates, Vocabulary};
use herald::simulate::{load_timeline, parse_timeline};
use herald::strategy::Strategy as HeraldStrategy;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::RngSeed;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

// ---------------------------------------------------------------------------
// Shared harness
// ---------------------------------------------------------------------------

/// The seed of this run: `PROPTEST_RNG_SEED`, else one drawn from the clock.
fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        std::env::var("PROPTEST_RNG_SEED")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0);
                nanos ^ (u64::from(std::process::id()) << 32)
            })
    })
}

/// How to reproduce a failure, appended to every assertion message.
fn rerun() -> String {
    format!("(rerun with PROPTEST_RNG_SEED={})", seed())
}

fn cfg(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed()),
        max_shrink_time: 20_000,
        ..ProptestConfig::default()
    }
}

/// A fresh number, to give every case its own customer ids.
fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

const BASE_CONFIG: &str = r#"
[channels.inbox]
builtin = "inbox"

[attributes]
ends_at = "date"
visits = "number"
level = "string"

[[rules]]
id = "welcome"
trigger = { on = "created" }
channels = ["inbox"]
subject = "Welcome {{ customer.name }}"
text = "Hello"

[[rules]]
id = "thanks"
trigger = { on = "event", kind = "purchase" }
channels = ["inbox"]
subject = "Thanks"
text = "Enjoy {{ event.properties.item }}"
"#;

/// A deployment on a temporary SQLite file, with only the built-in inbox.
struct Deployment {
    rt: tokio::runtime::Runtime,
    herald: Arc<Herald>,
    _dir: tempfile::TempDir,
}

impl Deployment {
    fn open() -> Deployment {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = dir.path().join("cache");
        let text = format!(
            "[plugins]\ncache_dir = \"{}\"\n{BASE_CONFIG}",
            cache.display()
        );
        let config = Config::parse(&text, &dir.path().join("herald.toml")).expect("base config");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let db = dir.path().join("h.db");
        let clock = Arc::new(VirtualClock::new(
            Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        ));
        let herald = rt
            .block_on(Herald::open(
                &config,
                OpenOptions {
                    db: Some(herald::store::Location::Embedded(db.clone())),
                    clock,
                    http_mode: HttpMode::Live,
                },
            ))
            .expect("open the deployment");
        Deployment {
            rt,
            herald: Arc::new(herald),
            _dir: dir,
        }
    }

    fn exists(&self, external_id: &str) -> bool {
        self.rt
            .block_on(self.herald.customer(external_id))
            .expect("read customer")
            .is_some_and(|c| c.deleted_at.is_none())
    }

    fn count(&self, table: &str) -> i64 {
        use herald::store::probe::{count, Count};
        let what = match table {
            "customers" => Count::Customers,
            "events" => Count::Events,
            other => panic!("no count of {other}"),
        };
        self.rt
            .block_on(count(&self.herald.store, what))
            .expect("count rows")
    }
}

/// The whole error chain of an `anyhow::Error`, as printed by the CLI.
fn chain(e: &anyhow::Error) -> String {
    format!("{e:#}")
}

// ---------------------------------------------------------------------------
// CSV import
// ---------------------------------------------------------------------------

const CSV_HEADER: &str = "external_id,name,email,timezone,created_at,ends_at,visits,note";
const CSV_COLUMNS: usize = 8;

/// What is wrong with a generated CSV row.
#[derive(Debug, Clone)]
enum Defect {
    TooFew(usize),
    TooMany(usize),
    EmptyId(&'static str),
    CreatedAt(&'static str),
    Timezone(&'static str),
    Email(&'static str),
    EndsAt(&'static str),
    Visits(&'static str),
    InvalidUtf8,
    /// A note cell (an undeclared attribute) of this many characters, past
    /// the 4 KiB an attribute value may hold.
    TooLong(usize),
}

impl Defect {
    /// What the row's reason must mention (compared in lower case).
    fn named(&self) -> &'static str {
        match self {
            Defect::TooFew(_) | Defect::TooMany(_) => "but the header has 8",
            Defect::EmptyId(_) => "external_id",
            Defect::CreatedAt(_) => "created_at",
            Defect::Timezone(_) => "timezone",
            Defect::Email(_) => "email",
            Defect::EndsAt(_) => "ends_at",
            Defect::Visits(_) => "visits",
            Defect::InvalidUtf8 => "utf-8",
            Defect::TooLong(_) => "the limit is 4096",
        }
    }
}

#[derive(Debug, Clone)]
struct CsvRow {
    name: String,
    email: String,
    timezone: &'static str,
    created_at: &'static str,
    ends_at: &'static str,
    visits: String,
    note: String,
    quote_all: bool,
    crlf: bool,
    defect: Option<Defect>,
}

fn text_cell() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "\\PC{0,24}",
        3 => "[a-z ,\"\\n\\r\t王芳]{0,24}",
        1 => "[a-z\\x00 ]{0,8}",
        // Long cells, within the 1 KiB a name and the 4 KiB a note may hold.
        1 => (1usize..4, "[a-z王]").prop_map(|(k, c)| c.repeat(k * 110)),
    ]
}

fn defect() -> impl Strategy<Value = Defect> {
    prop_oneof![
        (1usize..CSV_COLUMNS).prop_map(Defect::TooFew),
        (1usize..4).prop_map(Defect::TooMany),
        select(vec!["", "   "]).prop_map(Defect::EmptyId),
        select(vec![
            "yesterday",
            "2026-13-01",
            "2026-02-30",
            "01/02/2026",
            "2026-01-01T25:00:00Z",
            "2026-01-01T10:00:00",
        ])
        .prop_map(Defect::CreatedAt),
        select(vec!["Mars/Base", "Asia/Atlantis", "UTC+8", "GMT+25"]).prop_map(Defect::Timezone),
        select(vec!["nobody", "@example.com", "li@", "王芳"]).prop_map(Defect::Email),
        select(vec!["soon", "2026-02-31", "next tuesday", "31.12.2026"]).prop_map(Defect::EndsAt),
        select(vec!["many", "12abc", "1,5", "0x10"]).prop_map(Defect::Visits),
        Just(Defect::InvalidUtf8),
        (4_095usize..40_000).prop_map(Defect::TooLong),
    ]
}

fn csv_row(crlf: bool) -> impl Strategy<Value = CsvRow> {
    let crlf = if crlf {
        any::<bool>().boxed()
    } else {
        Just(false).boxed()
    };
    (
        (
            text_cell(),
            prop_oneof!["", "[a-z]{1,8}@[a-z]{1,8}\\.(com|cn)"],
            select(vec![
                "",
                "UTC",
                "Asia/Shanghai",
                "Europe/Berlin",
                " America/New_York ",
            ]),
            select(vec![
                "",
                "2026-01-05",
                "2025-12-31T23:59:59Z",
                "2026-01-06T08:30:00+08:00",
            ]),
            select(vec!["", "2026-02-04", "2026-02-04T10:00:00Z"]),
        ),
        (
            prop_oneof![
                Just(String::new()),
                any::<i32>().prop_map(|n| n.to_string())
            ],
            text_cell(),
            any::<bool>(),
            crlf,
            proptest::option::weighted(0.4, defect()),
        ),
    )
        .prop_map(
            |((name, email, timezone, created_at, ends_at), (visits, note, q, crlf, defect))| {
                CsvRow {
                    name,
                    email,
                    timezone,
                    created_at,
                    ends_at,
                    visits,
                    note,
                    quote_all: q,
                    crlf,
                    defect,
                }
            },
        )
}

fn csv_field(out: &mut Vec<u8>, field: &[u8], quote_all: bool) {
    let special = field
        .iter()
        .any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r'));
    if quote_all || special {
        out.push(b'"');
        for &b in field {
            if b == b'"' {
                out.push(b'"');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        out.extend_from_slice(field);
    }
}

impl CsvRow {
    fn encode(&self, id: &str, last: bool, out: &mut Vec<u8>) {
        let mut fields: Vec<Vec<u8>> = vec![
            id.as_bytes().to_vec(),
            self.name.as_bytes().to_vec(),
            self.email.as_bytes().to_vec(),
            self.timezone.as_bytes().to_vec(),
            self.created_at.as_bytes().to_vec(),
            self.ends_at.as_bytes().to_vec(),
            self.visits.as_bytes().to_vec(),
            self.note.as_bytes().to_vec(),
        ];
        match &self.defect {
            None => {}
            Some(Defect::TooFew(k)) => fields.truncate(CSV_COLUMNS - k),
            Some(Defect::TooMany(k)) => fields.extend((0..*k).map(|_| b"x".to_vec())),
            Some(Defect::EmptyId(v)) => fields[0] = v.as_bytes().to_vec(),
            Some(Defect::CreatedAt(v)) => fields[4] = v.as_bytes().to_vec(),
            Some(Defect::Timezone(v)) => fields[3] = v.as_bytes().to_vec(),
            Some(Defect::Email(v)) => fields[2] = v.as_bytes().to_vec(),
            Some(Defect::EndsAt(v)) => fields[5] = v.as_bytes().to_vec(),
            Some(Defect::Visits(v)) => fields[6] = v.as_bytes().to_vec(),
            Some(Defect::InvalidUtf8) => fields[1] = b"bad \xff\xfe name".to_vec(),
            Some(Defect::TooLong(n)) => fields[7] = "n".repeat(*n).into_bytes(),
        }
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            csv_field(out, field, self.quote_all);
        }
        if !last {
            out.extend_from_slice(if self.crlf { b"\r\n" } else { b"\n" });
        }
    }
}

fn deployment_for(slot: &'static OnceLock<Deployment>) -> &'static Deployment {
    slot.get_or_init(Deployment::open)
}

static CSV_DEPLOYMENT: OnceLock<Deployment> = OnceLock::new();

/// Import the rows; check each bad row is reported by its first line with a
/// reason naming the problem, and each good row is imported.
fn check_csv(rows: &[CsvRow], trailing_newline: bool) -> Result<(), TestCaseError> {
    {
        let d = deployment_for(&CSV_DEPLOYMENT);
        let case = unique();
        let mut bytes = format!("{CSV_HEADER}\n").into_bytes();
        let mut expected_failures = Vec::new();
        let mut good_ids = Vec::new();
        let mut bad_ids = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let id = format!("csv{case}-{i}");
            let line = 1 + bytes.iter().filter(|&&b| b == b'\n').count() as u64;
            row.encode(&id, i + 1 == rows.len() && !trailing_newline, &mut bytes);
            match &row.defect {
                None => good_ids.push(id),
                Some(defect) => {
                    expected_failures.push((line, defect.clone()));
                    if !matches!(defect, Defect::EmptyId(_)) {
                        bad_ids.push(id);
                    }
                }
            }
        }
        let report =
            d.rt.block_on(import_csv(&d.herald, bytes.as_slice()))
                .map_err(|e| {
                    TestCaseError::fail(format!(
                        "import failed as a whole: {} {}",
                        chain(&e),
                        rerun()
                    ))
                })?;
        let lines: Vec<u64> = report.failed.iter().map(|(l, _)| *l).collect();
        let wanted: Vec<u64> = expected_failures.iter().map(|(l, _)| *l).collect();
        prop_assert_eq!(
            &lines,
            &wanted,
            "failed lines {:?} {}",
            report.failed,
            rerun()
        );
        for ((line, reason), (_, defect)) in report.failed.iter().zip(&expected_failures) {
            prop_assert!(
                reason.to_lowercase().contains(defect.named()),
                "line {line}: reason `{reason}` does not name `{}` ({defect:?}) {}",
                defect.named(),
                rerun()
            );
        }
        prop_assert_eq!(
            report.imported,
            good_ids.len(),
            "{:?} {}",
            report.failed,
            rerun()
        );
        for id in &good_ids {
            prop_assert!(d.exists(id), "good row {id} was not imported {}", rerun());
        }
        for id in &bad_ids {
            prop_assert!(!d.exists(id), "bad row {id} was written {}", rerun());
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(cfg(192))]

    /// Rows with random, quoted, multi-line, huge, invalid-UTF-8 and wrong
    /// cells: every bad row is reported once, by the line it starts on, with a
    /// reason naming the problem; every good row is imported; nothing panics.
    #[test]
    fn csv_bad_rows_are_reported_by_line_and_good_rows_import(
        rows in prop::collection::vec(csv_row(false), 1..10),
        trailing_newline in any::<bool>(),
    ) {
        check_csv(&rows, trailing_newline)?;
    }

    /// Arbitrary bytes after a valid header, and arbitrary bytes as the whole
    /// file: never a panic; a refused file names the header; refused rows name
    /// a line after the header and give a reason.
    #[test]
    fn csv_arbitrary_bytes_never_panic(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..400),
            prop::collection::vec(select(b"ab,\"\n\r \xff\xc3x1@".to_vec()), 0..400),
        ],
        with_header in any::<bool>(),
    ) {
        let d = deployment_for(&CSV_DEPLOYMENT);
        let mut bytes = Vec::new();
        if with_header {
            bytes.extend_from_slice(b"external_id,name,email,timezone\n");
        }
        bytes.extend_from_slice(&body);
        match d.rt.block_on(import_csv(&d.herald, bytes.as_slice())) {
            Err(e) => {
                let text = chain(&e);
                prop_assert!(!with_header, "a file with a good header was refused whole: {text} {}", rerun());
                prop_assert!(text.contains("header"), "refusal does not name the header: {text} {}", rerun());
            }
            Ok(report) => {
                for (line, reason) in &report.failed {
                    prop_assert!(*line >= 2, "row reported at line {line}: {reason} {}", rerun());
                    prop_assert!(!reason.trim().is_empty(), "empty reason at line {line} {}", rerun());
                }
                let mut sorted = report.failed.clone();
                sorted.sort_by_key(|(l, _)| *l);
                prop_assert_eq!(&sorted, &report.failed, "failures out of file order {}", rerun());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Timeline reader
// ---------------------------------------------------------------------------

const TIMELINE: &str = "t.jsonl";

fn instant() -> impl Strategy<Value = String> {
    (
        2000i32..2100,
        1u32..13,
        1u32..29,
        0u32..24,
        0u32..60,
        select(vec!["Z", "+08:00", "-05:30"]),
    )
        .prop_map(|(y, mo, d, h, mi, z)| format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:00{z}"))
}

fn valid_op() -> impl Strategy<Value = Value> {
    let id = "[a-z0-9]{1,6}";
    prop_oneof![
        (instant(), id, "\\PC{0,12}", select(vec!["UTC", "Asia/Shanghai", "Mars/Base"])).prop_map(
            |(at, id, name, tz)| json!({"at": at, "op": "upsert", "customer": {"external_id": id, "name": name, "timezone": tz, "attributes": {"plan": "pro"}}})
        ),
        (instant(), id, "[a-z_]{1,8}", proptest::option::of("[a-z0-9]{1,8}")).prop_map(
            |(at, id, kind, event_id)| {
                let mut v = json!({"at": at, "op": "event", "customer": id, "kind": kind, "properties": {"item": "book"}});
                if let Some(e) = event_id {
                    v["event_id"] = Value::String(e);
                }
                v
            }
        ),
        (instant(), id).prop_map(|(at, id)| json!({"at": at, "op": "delete", "customer": id})),
    ]
}

/// A change that makes a valid op line invalid.
#[derive(Debug, Clone)]
enum LineMutation {
    Remove(&'static str),
    BadAt(Value),
    BadOp(Value),
    UnknownKey(&'static str),
    CustomerType(Value),
    Truncate(prop::sample::Index),
    Garbage(&'static str),
    NotObject,
}

fn line_mutation() -> impl Strategy<Value = LineMutation> {
    prop_oneof![
        select(vec!["at", "op", "customer"]).prop_map(LineMutation::Remove),
        select(vec![
            json!("yesterday"),
            json!("2026-01-01"),
            json!(""),
            json!("2026-13-01T00:00:00Z"),
            json!(5),
            json!(null),
            json!(["2026-01-01T00:00:00Z"]),
        ])
        .prop_map(LineMutation::BadAt),
        select(vec![json!("upsrt"), json!(""), json!(3), json!("UPSERT")])
            .prop_map(LineMutation::BadOp),
        select(vec!["knd", "extra", "customer_id"]).prop_map(LineMutation::UnknownKey),
        select(vec![json!(5), json!(null), json!([1]), json!(true)])
            .prop_map(LineMutation::CustomerType),
        any::<prop::sample::Index>().prop_map(LineMutation::Truncate),
        select(vec!["x", ",", "}", " {}", "]"]).prop_map(LineMutation::Garbage),
        Just(LineMutation::NotObject),
    ]
}

fn mutate_line(op: &Value, m: &LineMutation) -> String {
    let mut v = op.clone();
    let obj = v.as_object_mut().expect("ops are objects");
    match m {
        LineMutation::Remove(key) => {
            obj.remove(*key);
        }
        LineMutation::BadAt(at) => {
            obj.insert("at".into(), at.clone());
        }
        LineMutation::BadOp(o) => {
            obj.insert("op".into(), o.clone());
        }
        LineMutation::UnknownKey(k) => {
            obj.insert((*k).into(), json!("x"));
        }
        LineMutation::CustomerType(c) => {
            obj.insert("customer".into(), c.clone());
        }
        LineMutation::Truncate(at) => {
            let text = v.to_string();
            let cut: Vec<char> = text.chars().collect();
            let keep = 1 + at.index(cut.len() - 1);
            return cut[..keep].iter().collect();
        }
        LineMutation::Garbage(g) => return format!("{v}{g}"),
        LineMutation::NotObject => return json!([v]).to_string(),
    }
    v.to_string()
}

/// One line of a generated timeline and whether it is known to be bad.
#[derive(Debug, Clone)]
enum TimelineLine {
    Valid(Value),
    Mutated(Value, LineMutation),
    Arbitrary(String),
    Blank(&'static str),
}

fn timeline_line() -> impl Strategy<Value = TimelineLine> {
    prop_oneof![
        4 => valid_op().prop_map(TimelineLine::Valid),
        4 => (valid_op(), line_mutation()).prop_map(|(v, m)| TimelineLine::Mutated(v, m)),
        2 => "[^\\r\\n]{0,40}".prop_map(TimelineLine::Arbitrary),
        1 => "[{}\\[\\]\":,a-z0-9 ]{0,30}".prop_map(TimelineLine::Arbitrary),
        1 => select(vec!["", "   ", "// a comment", "\t"]).prop_map(TimelineLine::Blank),
    ]
}

impl TimelineLine {
    fn text(&self) -> String {
        match self {
            TimelineLine::Valid(v) => v.to_string(),
            TimelineLine::Mutated(v, m) => mutate_line(v, m),
            TimelineLine::Arbitrary(s) => s.clone(),
            TimelineLine::Blank(s) => (*s).to_string(),
        }
    }
}

/// Line numbers named by a timeline error (`t.jsonl:N: ...` lines).
fn named_lines(error: &str) -> BTreeSet<usize> {
    error
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{TIMELINE}:")))
        .filter_map(|rest| rest.split_once(':'))
        .filter_map(|(n, _)| n.parse().ok())
        .collect()
}

proptest! {
    #![proptest_config(cfg(192))]

    /// Valid, mutated and arbitrary lines: never a panic; the error names
    /// exactly the bad lines by number, each known-bad mutation among them;
    /// with no bad line every op is read with its own line number.
    #[test]
    fn timeline_errors_name_every_bad_line(
        lines in prop::collection::vec(timeline_line(), 0..14),
        crlf in any::<bool>(),
    ) {
        let texts: Vec<String> = lines.iter().map(TimelineLine::text).collect();
        let text = texts.join(if crlf { "\r\n" } else { "\n" });
        let mut bad = BTreeSet::new();
        let mut ops = Vec::new();
        for (i, (line, raw)) in lines.iter().zip(&texts).enumerate() {
            let n = i + 1;
            let alone = parse_timeline(raw, TIMELINE);
            if matches!(line, TimelineLine::Mutated(..)) {
                prop_assert!(alone.is_err(), "mutated line {n} `{raw}` was accepted {}", rerun());
            }
            if matches!(line, TimelineLine::Valid(_)) {
                prop_assert!(alone.is_ok(), "valid line {n} `{raw}` refused: {:?} {}", alone.err(), rerun());
            }
            match alone {
                Err(_) => { bad.insert(n); }
                Ok(parsed) => {
                    if !parsed.is_empty() {
                        ops.push(n);
                    }
                }
            }
        }
        match parse_timeline(&text, TIMELINE) {
            Err(e) => {
                let message = e.to_string();
                prop_assert!(!bad.is_empty(), "refused with no bad line: {message} {}", rerun());
                prop_assert_eq!(named_lines(&message), bad.clone(), "{} {}", message, rerun());
                prop_assert!(
                    message.contains(&format!("has {} bad line(s)", bad.len())),
                    "{message} {}", rerun()
                );
                for detail in message.lines().skip(1) {
                    let (_, reason) = detail.split_once(": ").unwrap_or((detail, ""));
                    prop_assert!(!reason.trim().is_empty(), "empty reason in `{detail}` {}", rerun());
                }
            }
            Ok(parsed) => {
                prop_assert!(bad.is_empty(), "bad lines {bad:?} were accepted {}", rerun());
                let mut got: Vec<usize> = parsed.iter().map(|o| o.line).collect();
                got.sort_unstable();
                prop_assert_eq!(got, ops, "{}", rerun());
            }
        }
    }

    /// Arbitrary bytes in a timeline file: never a panic; a file that is not
    /// UTF-8 is refused naming the file; otherwise errors name lines.
    #[test]
    fn timeline_files_of_arbitrary_bytes_never_panic(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            prop::collection::vec(select(b"{}[]\":,at op\n\r\xff0123456789-TZ".to_vec()), 0..300),
        ],
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(TIMELINE);
        std::fs::write(&path, &bytes).expect("write timeline");
        match load_timeline(&path) {
            Ok(_) => {}
            Err(e) => {
                let message = chain(&e);
                if std::str::from_utf8(&bytes).is_err() {
                    prop_assert!(message.contains(&path.display().to_string()), "{message} {}", rerun());
                } else {
                    let named = message
                        .lines()
                        .filter(|l| l.starts_with(&path.display().to_string()))
                        .count();
                    prop_assert!(named >= 1, "no line named in: {message} {}", rerun());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Config + strategy
// ---------------------------------------------------------------------------

/// Parse a TOML fragment written in this file.
fn t(text: &str) -> toml::Table {
    toml::from_str(text).unwrap_or_else(|e| panic!("fixture `{text}`: {e}"))
}

const RULE_BODY: &str = r#"
channels = ["inbox"]
subject = "Hi {{ customer.name }}"
text = "Plan {{ customer.level }} ends {{ customer.ends_at | date }}"
html = "<p>{{ customer.name }}</p>"
when = "customer.state != 'paid'"
send_windows = ["09:00-21:00"]
fields = { code = "{{ customer.external_id }}" }
goal = { event = "login", within = "3d" }
[[steps]]
after = "2d"
channels = ["calls"]
subject = "Still there?"
text = "Come back"
[locales.zh-CN]
subject = "您好 {{ customer.name }}"
text = "再见"
html = "<p>再见</p>"
"#;

const CONFIG_BODY: &str = r#"
[channels.inbox]
builtin = "inbox"
[channels.calls]
builtin = "task"
[attributes]
ends_at = "date"
level = "string"
[strategy]
default_time = "10:00"
default_timezone = "Asia/Shanghai"
send_windows = ["08:00-22:00"]
caps = [{ max = 2, per = "7d" }]
[scheduler]
tick = "1s"
lease = "5m"
"#;

const TRIGGERS: &[&str] = &[
    r#"on = "created"
delay = "1h""#,
    r#"on = "event"
kind = "purchase"
delay = "10m""#,
    r#"on = "inactive"
kinds = ["login"]
for = "7d"
repeat = "7d"
max = 3"#,
    r#"on = "date"
attribute = "ends_at"
before = "3d"
at = "09:30""#,
    r#"on = "date"
attribute = "ends_at"
cron = "0 0 9 * * Mon""#,
    r#"on = "updated"
field = "level"
to = "vip""#,
];

/// A valid `herald.toml` as a TOML table: rules `r0`.. of assorted triggers.
fn valid_config() -> impl Strategy<Value = toml::Table> {
    prop::collection::vec(0..TRIGGERS.len(), 1..5).prop_map(|kinds| {
        let mut rules = Vec::new();
        for (i, kind) in kinds.iter().enumerate() {
            let mut rule = t(RULE_BODY);
            rule.insert("id".into(), format!("r{i}").into());
            rule.insert("trigger".into(), toml::Value::Table(t(TRIGGERS[*kind])));
            rules.push(toml::Value::Table(rule));
        }
        let mut config = t(CONFIG_BODY);
        config.insert("rules".into(), toml::Value::Array(rules));
        config
    })
}

/// A mistake planted in a valid config, with what the error must name.
#[derive(Debug, Clone)]
enum ConfigMutation {
    /// A bad duration in a rule key (`delay`, `within`, `after`, `for`).
    RuleDuration(prop::sample::Index, &'static str),
    Cron(prop::sample::Index, &'static str),
    RuleWindow(prop::sample::Index, &'static str),
    StrategyWindow(&'static str),
    Template(prop::sample::Index, &'static str, &'static str),
    UnknownRuleKey(prop::sample::Index, &'static str),
    UnknownSectionKey(&'static str, &'static str),
    WrongType(prop::sample::Index, &'static str, toml::Value),
    DefaultTime(&'static str),
    DefaultTimezone(&'static str),
    UnknownChannel(prop::sample::Index, &'static str),
    BadId(prop::sample::Index, &'static str),
    DuplicateId(prop::sample::Index),
    LocaleTag(prop::sample::Index, &'static str),
    OnCap(prop::sample::Index, &'static str),
    Cap(u32, &'static str),
    SchedulerDuration(&'static str, &'static str),
}

const BAD_DURATIONS: &[&str] = &[
    "5 fortnights",
    "3 days",
    "1.5d",
    "",
    "d",
    "--1d",
    "1x",
    "4",
    "99999999999999999999d",
    "-3d",
    "1mo",
];

fn config_mutation() -> impl Strategy<Value = ConfigMutation> {
    let idx = any::<prop::sample::Index>;
    prop_oneof![
        (idx(), select(BAD_DURATIONS.to_vec()))
            .prop_map(|(i, v)| ConfigMutation::RuleDuration(i, v)),
        (
            idx(),
            select(vec![
                "not a cron",
                "* * *",
                "61 * * * * *",
                "",
                "0 0 25 * * *"
            ])
        )
            .prop_map(|(i, v)| ConfigMutation::Cron(i, v)),
        (
            idx(),
            select(vec!["25:00-26:00", "9-17", "10:00-10:00", "morning"])
        )
            .prop_map(|(i, v)| ConfigMutation::RuleWindow(i, v)),
        select(vec!["25:00-26:00", "9:00", "10:00-10:00", ""])
            .prop_map(ConfigMutation::StrategyWindow),
        (
            idx(),
            select(vec!["subject", "text", "html", "when", "fields"]),
            select(vec![
                "{{ unclosed",
                "{% if %}",
                "{{ customer.nickname }}",
                "{% for x in %}{% endfor %}",
                "{{ customer.name | date( }}",
                "{% endif %}",
                "{{ target.score }}",
                "{{ ",
            ]),
        )
            .prop_map(|(i, k, v)| ConfigMutation::Template(i, k, v)),
        (idx(), select(vec!["bogus", "chanels", "subjct"]))
            .prop_map(|(i, k)| ConfigMutation::UnknownRuleKey(i, k)),
        (
            select(vec!["strategy", "scheduler", "channels.inbox"]),
            select(vec!["tikc", "bogus"])
        )
            .prop_map(|(s, k)| ConfigMutation::UnknownSectionKey(s, k)),
        (
            idx(),
            select(vec![
                "channels",
                "subject",
                "transactional",
                "send_windows",
                "fields",
                "goal",
                "steps"
            ]),
            select(vec![
                toml::Value::Integer(5),
                toml::Value::Boolean(true),
                toml::Value::Float(1.5),
                toml::Value::String("inbox".into()),
            ]),
        )
            .prop_filter("valid values are not mistakes", |(_, k, v)| {
                let valid =
                    (*k == "subject" && v.is_str()) || (*k == "transactional" && v.is_bool());
                !valid
            })
            .prop_map(|(i, k, v)| ConfigMutation::WrongType(i, k, v)),
        select(vec!["25:00", "9am", "", "10:61"]).prop_map(ConfigMutation::DefaultTime),
        select(vec!["Mars/Base", "", "UTC+8"]).prop_map(ConfigMutation::DefaultTimezone),
        (idx(), select(vec!["sms", "email", "INBOX"]))
            .prop_map(|(i, c)| ConfigMutation::UnknownChannel(i, c)),
        (idx(), select(vec!["bad id!", "", "r/1", "规则"]))
            .prop_map(|(i, v)| ConfigMutation::BadId(i, v)),
        idx().prop_map(ConfigMutation::DuplicateId),
        (
            idx(),
            select(vec!["zh CN", "", "en--US", "toolonglanguage"])
        )
            .prop_map(|(i, v)| ConfigMutation::LocaleTag(i, v)),
        (idx(), select(vec!["explode", "DROP", ""])).prop_map(|(i, v)| ConfigMutation::OnCap(i, v)),
        prop_oneof![
            Just((0u32, "1d")),
            Just((2u32, "1mo")),
            Just((2u32, "0s")),
            Just((2u32, "-1d")),
        ]
        .prop_map(|(m, p)| ConfigMutation::Cap(m, p)),
        (
            select(vec!["tick", "lease"]),
            select(vec!["5 fortnights", "1mo", "-1s", "soon"])
        )
            .prop_map(|(k, v)| ConfigMutation::SchedulerDuration(k, v)),
    ]
}

fn rule_mut<'a>(
    config: &'a mut toml::Table,
    i: &prop::sample::Index,
) -> (String, &'a mut toml::Table) {
    let rules = config["rules"].as_array_mut().expect("rules");
    let n = i.index(rules.len());
    let rule = rules[n].as_table_mut().expect("rule table");
    let id = rule["id"].as_str().expect("id").to_string();
    (id, rule)
}

fn table<'a>(config: &'a mut toml::Table, path: &str) -> &'a mut toml::Table {
    let mut t = config;
    for part in path.split('.') {
        t = t
            .entry(part)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("section table");
    }
    t
}

/// Plant the mistake; the result is the text every error must contain.
fn apply_config_mutation(config: &mut toml::Table, m: &ConfigMutation) -> Vec<String> {
    let s = |v: &str| toml::Value::String(v.to_string());
    match m {
        ConfigMutation::RuleDuration(i, v) => {
            let (id, rule) = rule_mut(config, i);
            let trigger = rule["trigger"].as_table_mut().expect("trigger");
            let key = match trigger["on"].as_str() {
                Some("created") | Some("event") => {
                    trigger.insert("delay".into(), s(v));
                    "delay"
                }
                Some("inactive") => {
                    trigger.insert("for".into(), s(v));
                    "for"
                }
                _ => {
                    rule["goal"]
                        .as_table_mut()
                        .expect("goal")
                        .insert("within".into(), s(v));
                    "within"
                }
            };
            // "1mo" is a fine span but no fixed duration; "-3d" parses but
            // is negative: both are found when the rule is compiled.
            if matches!(*v, "-3d" | "1mo") {
                vec![format!("rule `{id}`"), key.to_string()]
            } else {
                vec![key.to_string(), v.to_string()]
            }
        }
        ConfigMutation::Cron(i, v) => {
            let (id, rule) = rule_mut(config, i);
            let mut trigger = t(TRIGGERS[4]);
            trigger.insert("cron".into(), s(v));
            rule.insert("trigger".into(), toml::Value::Table(trigger));
            vec![format!("rule `{id}`"), "cron".into()]
        }
        ConfigMutation::RuleWindow(i, v) => {
            let (id, rule) = rule_mut(config, i);
            rule.insert("send_windows".into(), toml::Value::Array(vec![s(v)]));
            vec![format!("rule `{id}`"), format!("send window `{v}`")]
        }
        ConfigMutation::StrategyWindow(v) => {
            table(config, "strategy").insert("send_windows".into(), toml::Value::Array(vec![s(v)]));
            vec!["[strategy] send_windows".into(), format!("`{v}`")]
        }
        ConfigMutation::Template(i, key, v) => {
            let (id, rule) = rule_mut(config, i);
            let part = if *key == "fields" {
                rule.insert(
                    "fields".into(),
                    toml::Value::Table(toml::Table::from_iter([("code".to_string(), s(v))])),
                );
                "fields.code".to_string()
            } else {
                rule.insert((*key).into(), s(v));
                (*key).to_string()
            };
            vec![format!("rule `{id}`, {part}")]
        }
        ConfigMutation::UnknownRuleKey(i, k) => {
            let (_, rule) = rule_mut(config, i);
            rule.insert((*k).into(), s("x"));
            vec![format!("unknown field `{k}`")]
        }
        ConfigMutation::UnknownSectionKey(section, k) => {
            table(config, section).insert((*k).into(), s("1s"));
            vec![format!("unknown field `{k}`")]
        }
        ConfigMutation::WrongType(i, key, v) => {
            let (_, rule) = rule_mut(config, i);
            rule.insert((*key).into(), v.clone());
            vec![(*key).to_string()]
        }
        ConfigMutation::DefaultTime(v) => {
            table(config, "strategy").insert("default_time".into(), s(v));
            vec!["[strategy] default_time".into()]
        }
        ConfigMutation::DefaultTimezone(v) => {
            table(config, "strategy").insert("default_timezone".into(), s(v));
            vec!["[strategy] default_timezone".into()]
        }
        ConfigMutation::UnknownChannel(i, c) => {
            let (id, rule) = rule_mut(config, i);
            rule.insert(
                "channels".into(),
                toml::Value::Array(vec![s("inbox"), s(c)]),
            );
            vec![
                format!("rule `{id}`"),
                format!("channel `{c}` is not configured"),
            ]
        }
        ConfigMutation::BadId(i, v) => {
            let (_, rule) = rule_mut(config, i);
            rule.insert("id".into(), s(v));
            vec![format!("rule `{}`", v.trim()), "rule ids use".into()]
        }
        ConfigMutation::DuplicateId(i) => {
            let (id, _) = rule_mut(config, i);
            let rules = config["rules"].as_array_mut().expect("rules");
            let mut copy = rules[0].clone();
            copy["id"] = s(&id);
            rules.push(copy);
            vec![format!("rule `{id}`"), "unique".into()]
        }
        ConfigMutation::LocaleTag(i, tag) => {
            let (id, rule) = rule_mut(config, i);
            let locales = rule["locales"].as_table_mut().expect("locales");
            let zh = locales["zh-CN"].clone();
            locales.insert((*tag).into(), zh);
            vec![format!("rule `{id}`, locales")]
        }
        ConfigMutation::OnCap(i, v) => {
            let (id, rule) = rule_mut(config, i);
            rule.insert("on_cap".into(), s(v));
            vec![format!("rule `{id}`"), "on_cap".into()]
        }
        ConfigMutation::Cap(max, per) => {
            let mut cap = toml::Table::new();
            cap.insert("max".into(), toml::Value::Integer(i64::from(*max)));
            cap.insert("per".into(), s(per));
            table(config, "strategy").insert(
                "caps".into(),
                toml::Value::Array(vec![toml::Value::Table(cap)]),
            );
            vec!["[strategy] caps[0]".into()]
        }
        ConfigMutation::SchedulerDuration(k, v) => {
            table(config, "scheduler").insert((*k).into(), s(v));
            vec![format!("[scheduler] {k}")]
        }
    }
}

/// A TOML key, quoted when it is not bare.
fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        toml::Value::String(k.to_string()).to_string()
    }
}

/// Write a config the way operators do: `[section]` and `[[rules]]`
/// headers, every value (triggers, goals, steps, locales) inline.
fn render_config(config: &toml::Table) -> String {
    let mut out = String::new();
    let body = |out: &mut String, t: &toml::Table| {
        for (k, v) in t {
            out.push_str(&format!("{} = {v}\n", toml_key(k)));
        }
    };
    for (name, value) in config {
        match (name.as_str(), value) {
            ("rules", toml::Value::Array(rules)) => {
                for rule in rules {
                    out.push_str("\n[[rules]]\n");
                    body(&mut out, rule.as_table().expect("rule table"));
                }
            }
            ("channels", toml::Value::Table(channels)) => {
                for (channel, section) in channels {
                    out.push_str(&format!("\n[channels.{}]\n", toml_key(channel)));
                    body(&mut out, section.as_table().expect("channel table"));
                }
            }
            (section, toml::Value::Table(t)) => {
                out.push_str(&format!("\n[{}]\n", toml_key(section)));
                body(&mut out, t);
            }
            (key, other) => out.insert_str(0, &format!("{} = {other}\n", toml_key(key))),
        }
    }
    out
}

/// Parse, compile and resolve the scheduler, as `Herald::open` does first.
fn load(text: &str) -> Result<(), String> {
    let config = Config::parse(text, Path::new("herald.toml")).map_err(|e| chain(&e))?;
    HeraldStrategy::compile(&config, &Channels::names(&config))?;
    config.scheduler().map_err(|e| chain(&e))?;
    Ok(())
}

/// TOML-ish text: section headers and `key = value` lines from Herald's
/// vocabulary with values of every type, plus raw noise.
fn tomlish() -> impl Strategy<Value = String> {
    let key = select(vec![
        "id",
        "trigger",
        "channels",
        "subject",
        "text",
        "html",
        "when",
        "builtin",
        "plugin",
        "send_windows",
        "default_time",
        "default_timezone",
        "caps",
        "tick",
        "lease",
        "batch",
        "fields",
        "goal",
        "steps",
        "locales",
        "on_cap",
        "transactional",
        "max_attempts",
        "x",
        "\"\"",
        "a.b",
        "rules",
    ]);
    let value = prop_oneof![
        select(vec![
            "\"inbox\"", "\"5 fortnights\"", "\"25:00-26:00\"", "\"{{ unclosed\"", "\"{% if %}\"",
            "[\"inbox\"]", "[]", "[[]]", "{}", "{ on = \"created\" }",
            "{ on = \"date\", attribute = \"ends_at\", cron = \"* * *\" }",
            "{ on = \"inactive\", kinds = [], for = \"0s\" }",
            "{ on = \"inactive\", kinds = [\"a\"], for = \"9999999999h\", repeat = \"1d\", max = 0 }",
            "{ on = \"updated\", to = 5 }", "{ on = \"nope\" }", "[{ max = 0, per = \"1mo\" }]",
            "true", "-1", "9223372036854775807", "1e400", "nan", "2026-01-01",
            "\"\"\"\nmulti\n\"\"\"", "'lit'", "{ max = 1, per = \"-1d\" }",
        ])
        .prop_map(String::from),
        "\\PC{0,12}".prop_map(|s| format!("{s:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
    ];
    let line = prop_oneof![
        3 => (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => select(vec![
            "[[rules]]", "[strategy]", "[channels.inbox]", "[attributes]", "[scheduler]",
            "[retry]", "[[rules.steps]]", "[rules.locales.en]", "[server]", "[channels]",
            "[[strategy.caps]]",
        ]).prop_map(String::from),
        1 => "[^\\n]{0,30}",
    ];
    prop::collection::vec(line, 0..24).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(cfg(512))]

    /// One planted mistake in a valid deployment file: loading refuses it
    /// with an error naming the rule / section and key; never a panic.
    #[test]
    fn config_mistakes_are_refused_naming_rule_and_key(
        base in valid_config(),
        mutation in config_mutation(),
    ) {
        let text = render_config(&base);
        prop_assert!(load(&text).is_ok(), "the valid base is refused: {:?}\n{text} {}", load(&text).err(), rerun());
        let mut broken = base.clone();
        let wanted = apply_config_mutation(&mut broken, &mutation);
        let text = render_config(&broken);
        match load(&text) {
            Ok(()) => prop_assert!(false, "accepted {mutation:?}:\n{text} {}", rerun()),
            Err(e) => {
                for w in &wanted {
                    prop_assert!(e.contains(w.as_str()), "error for {mutation:?} does not name `{w}`:\n{e}\n---\n{text} {}", rerun());
                }
            }
        }
    }

    /// TOML-ish noise: parse + compile + scheduler never panic, and a refusal
    /// is never empty.
    #[test]
    fn tomlish_text_never_panics(text in tomlish()) {
        if let Err(e) = load(&text) {
            prop_assert!(!e.trim().is_empty(), "empty error for:\n{text} {}", rerun());
        }
        let with_channel = format!("[channels.inbox]\nbuiltin = \"inbox\"\n[attributes]\nends_at = \"date\"\n{text}");
        if let Err(e) = load(&with_channel) {
            prop_assert!(!e.trim().is_empty(), "empty error for:\n{with_channel} {}", rerun());
        }
    }
}

proptest! {
    #![proptest_config(cfg(32))]

    /// The same with Windows (CRLF) line endings, as spreadsheets write them.
    #[test]
    fn csv_crlf_rows_are_reported_by_their_own_line(
        rows in prop::collection::vec(csv_row(true), 1..10),
        trailing_newline in any::<bool>(),
    ) {
        check_csv(&rows, trailing_newline)?;
    }
}

/// Durations so large they overflow the span arithmetic.
const OVERFLOWING_DURATIONS: &[&str] = &[
    "400000000w",
    "200000000y",
    "2000000000d2000000000d",
    "9223372036854775807h",
    "2000000000d2562047788h",
];

proptest! {
    #![proptest_config(cfg(32))]

    /// Huge durations in any duration key are refused as too large.
    #[test]
    fn huge_durations_are_refused_not_overflowed(
        base in valid_config(),
        i in any::<prop::sample::Index>(),
        v in select(OVERFLOWING_DURATIONS.to_vec()),
    ) {
        let mut broken = base.clone();
        let wanted = apply_config_mutation(&mut broken, &ConfigMutation::RuleDuration(i, v));
        let text = render_config(&broken);
        let result = std::panic::catch_unwind(|| load(&text));
        prop_assert!(result.is_ok(), "loading panicked on `{v}`:\n{text} {}", rerun());
        let result = result.unwrap_or(Ok(()));
        prop_assert!(result.is_err(), "accepted `{v}` {}", rerun());
        let e = result.unwrap_err();
        prop_assert!(e.contains(wanted[0].as_str()), "{e} {}", rerun());
    }
}

// ---------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------

fn part() -> impl Strategy<Value = Part> {
    prop_oneof![
        Just(Part::Subject),
        Just(Part::Text),
        Just(Part::Html),
        Just(Part::When),
        "[a-z_]{1,6}".prop_map(Part::Field),
    ]
}

/// Template source made of jinja fragments, text and noise.
fn template_source() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => select(vec![
            "{{", "}}", "{%", "%}", "{#", "#}", " ", "customer.name", "customer.nickname",
            "customer.ends_at", "event.kind", "target.x", "rule", "now", "|", "date(", "days_until",
            "days_since", ")", "(", "if", "endif", "else", "for x in", "endfor", "set y =", "'",
            "\"", "1", "+", "~", "[", "]", "loop.index", "raw", "endraw", "macro m()", "endmacro",
            "include 'x'", "extends 'y'", "block b", "endblock", "\n", "王芳", "{{-", "-}}",
        ]).prop_map(String::from),
        1 => "\\PC{0,8}",
    ];
    prop_oneof![
        8 => prop::collection::vec(piece, 0..24).prop_map(|p| p.concat()),
        1 => (1usize..3000, select(vec![("(", ")"), ("[", "]"), ("{", "}"), ("not ", ""), ("-", "")]))
            .prop_map(|(n, (open, close))| format!("{{{{ {}1{} }}}}", open.repeat(n), close.repeat(n))),
        1 => (1usize..600).prop_map(|n| "{% if true %}".repeat(n) + &"{% endif %}".repeat(n)),
    ]
}

proptest! {
    #![proptest_config(cfg(512))]

    /// Any template source: compiling never panics; a refusal names the rule
    /// and the part (`rule \`r\`, subject...`).
    #[test]
    fn template_errors_name_rule_and_part(
        rule in "[a-z][a-z0-9_-]{0,8}",
        part in part(),
        source in template_source(),
        has_event in any::<bool>(),
        has_target in any::<bool>(),
        has_history in any::<bool>(),
    ) {
        let vocab = Vocabulary {
            attributes: ["ends_at".to_string()].into_iter().collect(),
            has_event,
            has_target,
            has_history,
        };
        let mut templates = Templates::new();
        let key = part.key();
        if let Err(e) = templates.add(&rule, part, &source, &vocab) {
            let prefix = format!("rule `{rule}`, {key}");
            prop_assert!(e.starts_with(&prefix), "error `{e}` does not start with `{prefix}` for {source:?} {}", rerun());
            prop_assert!(e.len() > prefix.len() + 2, "error without a reason: `{e}` {}", rerun());
        }
    }
}

// ---------------------------------------------------------------------------
// API bodies
// ---------------------------------------------------------------------------

/// The real router of `herald serve`, served on a loopback port.
struct Api {
    deployment: Deployment,
    addr: SocketAddr,
    /// An admin token of this deployment, sent with every request.
    token: String,
}

/// One deployment per test function (`slot`), so counts are not raced by
/// the other tests running in parallel.
fn api(slot: &'static OnceLock<Api>) -> &'static Api {
    slot.get_or_init(|| {
        let deployment = Deployment::open();
        let router = herald::api::router(herald::live::Live::new(deployment.herald.clone()));
        let (token, _) = deployment
            .rt
            .block_on(herald::store::tokens::create(
                &deployment.herald.store,
                herald::store::tokens::Role::Admin,
                &[],
                Some("props"),
                deployment.herald.clock.now(),
            ))
            .expect("admin token");
        let listener = deployment
            .rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        deployment.rt.spawn(async move {
            axum::serve(listener, router).await.expect("serve");
        });
        let patch = serde_json::from_value(json!({"external_id": "ev-base", "name": "Base"}))
            .expect("patch");
        deployment
            .rt
            .block_on(deployment.herald.upsert_customer(&patch))
            .expect("base customer");
        Api {
            deployment,
            addr,
            token,
        }
    })
}

/// One HTTP/1.1 request; the status and the (de-chunked) body.
fn http(api: &Api, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(api.addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        api.token,
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write head");
    // The server may answer (413) and close before reading a large body.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line in {head}"));
    let mut rest = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = Vec::new();
        let mut at = 0;
        while let Some(eol) = rest[at..].windows(2).position(|w| w == b"\r\n") {
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&rest[at..at + eol]).trim(), 16)
                    .unwrap_or(0);
            at += eol + 2;
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[at..at + size]);
            at += size + 2;
        }
        rest = out;
    }
    (status, rest)
}

/// Check a refusal: a 4xx with `{"error": {"code", "message"}}`.
fn assert_json_error(status: u16, body: &[u8], what: &str) -> Result<String, TestCaseError> {
    let text = String::from_utf8_lossy(body);
    prop_assert!(
        (400..500).contains(&status),
        "{what}: status {status}, body {text} {}",
        rerun()
    );
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        TestCaseError::fail(format!(
            "{what}: status {status} body is not JSON ({e}): {text} {}",
            rerun()
        ))
    })?;
    let code = v["error"]["code"].as_str().unwrap_or("");
    let message = v["error"]["message"].as_str().unwrap_or("");
    prop_assert!(
        !code.is_empty() && !message.is_empty(),
        "{what}: not an error object: {text} {}",
        rerun()
    );
    Ok(code.to_string())
}

fn valid_customer(id: &str) -> impl Strategy<Value = Value> {
    let id = id.to_string();
    (
        "\\PC{0,16}",
        select(vec!["UTC", "Asia/Shanghai", "Europe/Berlin"]),
        select(vec!["gold", "vip"]),
    )
        .prop_map(move |(name, tz, level)| {
            json!({
                "external_id": id, "name": name, "email": "li@example.com", "timezone": tz,
                "attributes": {"ends_at": "2026-05-01", "level": level, "plan": "pro"}
            })
        })
}

/// What breaks a customer body, and the status family it must get.
#[derive(Debug, Clone)]
enum BodyMutation {
    Set(&'static str, Value),
    SetAttribute(&'static str, Value),
    Remove(&'static str),
    Truncate(prop::sample::Index),
    Garbage(&'static str),
    Scalar(Value),
    /// In an array after a valid item: the whole batch is refused.
    BrokenInBatch,
}

fn customer_mutation() -> impl Strategy<Value = BodyMutation> {
    prop_oneof![
        select(vec![
            ("bogus", json!(1)),
            ("name", json!(5)),
            ("name", json!(["x"])),
            ("email", json!("nobody")),
            ("email", json!("@x")),
            ("timezone", json!("Mars/Base")),
            ("timezone", json!(8)),
            ("created_at", json!("yesterday")),
            ("created_at", json!(17)),
            ("attributes", json!("x")),
            ("attributes", json!([1, 2])),
            ("external_id", json!(5)),
            ("external_id", json!(null)),
        ])
        .prop_map(|(k, v)| BodyMutation::Set(k, v)),
        select(vec![
            ("ends_at", json!("soon")),
            ("ends_at", json!(5)),
            ("name", json!("x")),
            ("updated_at", json!("2026-01-01")),
            ("level", json!({"a": 1})),
        ])
        .prop_map(|(k, v)| BodyMutation::SetAttribute(k, v)),
        Just(BodyMutation::Remove("external_id")),
        any::<prop::sample::Index>().prop_map(BodyMutation::Truncate),
        select(vec!["x", ",", "}", "{}", "]", "\u{0}"]).prop_map(BodyMutation::Garbage),
        select(vec![json!("text"), json!(5), json!(null), json!(true)])
            .prop_map(BodyMutation::Scalar),
        Just(BodyMutation::BrokenInBatch),
    ]
}

fn mutate_body(valid: &Value, m: &BodyMutation, batch_mate: &Value) -> Vec<u8> {
    let mut v = valid.clone();
    match m {
        BodyMutation::Set(k, x) => v[*k] = x.clone(),
        BodyMutation::SetAttribute(k, x) => v["attributes"][*k] = x.clone(),
        BodyMutation::Remove(k) => {
            v.as_object_mut().expect("object").remove(*k);
        }
        BodyMutation::Truncate(at) => {
            let text = v.to_string().into_bytes();
            return text[..at.index(text.len())].to_vec();
        }
        BodyMutation::Garbage(g) => return format!("{v}{g}").into_bytes(),
        BodyMutation::Scalar(x) => return x.to_string().into_bytes(),
        BodyMutation::BrokenInBatch => {
            v["bogus"] = json!(1);
            return json!([batch_mate, v]).to_string().into_bytes();
        }
    }
    v.to_string().into_bytes()
}

fn valid_event() -> impl Strategy<Value = Value> {
    ("[a-z_]{1,8}", "\\PC{0,12}").prop_map(|(kind, item)| {
        json!({"customer": "ev-base", "kind": kind, "at": "2026-01-02T00:00:00Z", "properties": {"item": item}})
    })
}

fn event_mutation() -> impl Strategy<Value = BodyMutation> {
    prop_oneof![
        select(vec![
            ("kind", json!("")),
            ("kind", json!("   ")),
            ("kind", json!(5)),
            ("customer", json!("nobody-at-all")),
            ("customer", json!(5)),
            ("knd", json!("x")),
            ("at", json!("tomorrow")),
            ("at", json!(1_700_000_000)),
            ("properties", json!("x")),
            ("properties", json!([1])),
            ("event_id", json!(5)),
        ])
        .prop_map(|(k, v)| BodyMutation::Set(k, v)),
        Just(BodyMutation::Remove("kind")),
        Just(BodyMutation::Remove("customer")),
        any::<prop::sample::Index>().prop_map(BodyMutation::Truncate),
        select(vec!["x", ",", "}", "{}", "]"]).prop_map(BodyMutation::Garbage),
        select(vec![json!("text"), json!(5), json!(null)]).prop_map(BodyMutation::Scalar),
        Just(BodyMutation::BrokenInBatch),
    ]
}

/// Raw bodies: bytes, JSON-ish noise, deep nesting.
fn raw_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(
            select(b"{}[]\":,0123456789.-eEtrufalsn \\\xff".to_vec()),
            0..300
        ),
        (1usize..100_000, select(vec!["[", "{\"a\":", "[{\"x\":"]))
            .prop_map(|(n, open)| open.repeat(n).into_bytes()),
    ]
}

proptest! {
    #![proptest_config(cfg(256))]

    /// Mutated customer bodies are refused with a 4xx JSON error, and the
    /// customer they name does not exist afterwards.
    #[test]
    fn api_rejected_customer_bodies_write_nothing(
        body in valid_customer("placeholder"),
        mate in valid_customer("placeholder"),
        mutation in customer_mutation(),
    ) {
        static CUSTOMER_API: OnceLock<Api> = OnceLock::new();
        let api = api(&CUSTOMER_API);
        let n = unique();
        let id = format!("api{n}");
        let mate_id = format!("api{n}-mate");
        let mut body = body;
        body["external_id"] = json!(id);
        let mut mate = mate;
        mate["external_id"] = json!(mate_id);
        let before = api.deployment.count("customers");
        let bytes = mutate_body(&body, &mutation, &mate);
        let (status, answer) = http(api, "POST", "/customers", &bytes);
        assert_json_error(status, &answer, &format!("POST /customers {mutation:?}"))?;
        prop_assert_eq!(api.deployment.count("customers"), before, "a row was written for {:?} {}", mutation, rerun());
        for id in [&id, &mate_id] {
            let (status, answer) = http(api, "GET", &format!("/customers/{id}"), b"");
            prop_assert_eq!(status, 404, "{} exists after {:?}: {} {}", id, mutation, String::from_utf8_lossy(&answer), rerun());
            let code = assert_json_error(status, &answer, "GET")?;
            prop_assert_eq!(code, "not_found");
        }
    }

    /// Mutated event bodies are refused with a 4xx JSON error and record no event.
    #[test]
    fn api_rejected_event_bodies_record_nothing(
        body in valid_event(),
        mate in valid_event(),
        mutation in event_mutation(),
    ) {
        static EVENT_API: OnceLock<Api> = OnceLock::new();
        let api = api(&EVENT_API);
        let before = api.deployment.count("events");
        let bytes = mutate_body(&body, &mutation, &mate);
        let (status, answer) = http(api, "POST", "/events", &bytes);
        assert_json_error(status, &answer, &format!("POST /events {mutation:?}"))?;
        prop_assert_eq!(api.deployment.count("events"), before, "an event was recorded for {:?} {}", mutation, rerun());
    }

    /// Arbitrary bytes to both endpoints: never a 5xx; a refusal is a JSON
    /// error and writes nothing; only valid JSON is ever accepted.
    #[test]
    fn api_arbitrary_bodies_never_5xx(
        body in raw_body(),
        events in any::<bool>(),
    ) {
        static RAW_API: OnceLock<Api> = OnceLock::new();
        let api = api(&RAW_API);
        let path = if events { "/events" } else { "/customers" };
        let (customers, recorded) = (api.deployment.count("customers"), api.deployment.count("events"));
        let (status, answer) = http(api, "POST", path, &body);
        prop_assert!(status < 500, "POST {path}: {status} {} {}", String::from_utf8_lossy(&answer), rerun());
        if (200..300).contains(&status) {
            prop_assert!(serde_json::from_slice::<Value>(&body).is_ok(), "accepted a non-JSON body {}", rerun());
        } else {
            assert_json_error(status, &answer, &format!("POST {path}"))?;
            prop_assert_eq!(api.deployment.count("customers"), customers, "{}", rerun());
            prop_assert_eq!(api.deployment.count("events"), recorded, "{}", rerun());
        }
    }
}

/// Valid neighbours still go through: a batch whose items all parse is
/// answered per item, the good ones written and the bad ones explained.
#[test]
fn api_batch_with_an_invalid_value_writes_the_valid_items() {
    static BATCH_API: OnceLock<Api> = OnceLock::new();
    let api = api(&BATCH_API);
    let n = unique();
    let good = format!("batch{n}-good");
    let bad = format!("batch{n}-bad");
    let body = json!([
        {"external_id": good, "name": "王芳"},
        {"external_id": bad, "timezone": "Mars/Base"},
    ]);
    let (status, answer) = http(api, "POST", "/customers", body.to_string().as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let v: Value = serde_json::from_slice(&answer).expect("json");
    assert!(v["results"][0]["ok"].is_object(), "{v}");
    assert_eq!(v["results"][1]["error"]["code"], "invalid", "{v}");
    assert!(api.deployment.exists(&good));
    assert!(!api.deployment.exists(&bad));
}

/// A body over the size limit is refused with the same JSON error shape.
#[test]
fn api_oversized_body_is_a_json_error() {
    static OVERSIZE_API: OnceLock<Api> = OnceLock::new();
    let api = api(&OVERSIZE_API);
    let mut attributes = Map::new();
    attributes.insert("blob".into(), Value::String("x".repeat(3 << 20)));
    let body = json!({"external_id": "huge", "attributes": attributes}).to_string();
    let (status, answer) = http(api, "POST", "/customers", body.as_bytes());
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&answer));
    let v: Value = serde_json::from_slice(&answer).unwrap_or_else(|_| {
        panic!(
            "413 body is not a JSON error: {:?}",
            String::from_utf8_lossy(&answer)
        )
    });
    assert!(v["error"]["code"].is_string(), "{v}");
    assert!(!api.deployment.exists("huge"));
}
