//! `herald bench`, part 5: memory of a real `herald serve`. A database with
//! many customers, their planned date reminders and 10 rules is built in
//! one transaction; the real binary (this executable) serves it on a
//! loopback port; once the reminders due at start are delivered and a few
//! more ticks have run, its peak and current resident memory are read from
//! `/proc/PID/status`, and it is stopped with SIGTERM. [`ServeChild`] is
//! also what the API load benchmark runs against.

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use herald::store::probe::{self, Count};
use herald::store::Location;
use herald::store::Store;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The serve child's scheduler tick.
pub const TICK_MS: u64 = 200;

/// A `herald serve` child process on a loopback port.
pub struct ServeChild {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl ServeChild {
    /// Start this executable as `herald serve --config CONFIG --db DB
    /// --listen 127.0.0.1:0` and wait (up to `timeout`) for its
    /// "listening on" line. `env` adds variables (e.g. HERALD_LOG).
    pub fn start(
        config: &Path,
        db: &Path,
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<ServeChild> {
        let exe = std::env::current_exe().context("cannot find the herald executable")?;
        let mut command = Command::new(&exe);
        command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--db")
            .arg(db)
            .args(["--listen", "127.0.0.1:0"])
            .env("HERALD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {} serve", exe.display()))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let mut stderr_pipe = child.stderr.take().context("no stderr pipe")?;
        // Drain stderr so the child never blocks on a full pipe; keep the tail.
        let stderr = std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = stderr_pipe.read_to_end(&mut all);
            let tail = all.len().saturating_sub(4000);
            String::from_utf8_lossy(&all[tail..]).into_owned()
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(url) = line.strip_prefix("listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let mut serving = ServeChild {
            child,
            base: String::new(),
            stderr: Some(stderr),
        };
        match rx.recv_timeout(timeout) {
            Ok(base) => {
                serving.base = base;
                Ok(serving)
            }
            Err(_) => {
                let _ = serving.child.kill();
                let _ = serving.child.wait();
                let tail = serving.stderr_tail();
                bail!(
                    "herald serve did not print its \"listening on\" line within {timeout:?}; its stderr ends with:\n{tail}"
                )
            }
        }
    }

    /// The end of what the child wrote on stderr (once it has exited).
    fn stderr_tail(&mut self) -> String {
        self.stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak and current resident memory in MiB (`VmHWM`, `VmRSS`).
    pub fn memory_mb(&self) -> Result<(f64, f64)> {
        let path = format!("/proc/{}/status", self.pid());
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let field = |name: &str| -> Result<f64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("{path} has no {name} line"))?;
            let kb: f64 = line
                .trim_start_matches(name)
                .trim_start_matches(':')
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .with_context(|| format!("cannot read `{line}` in {path}"))?;
            Ok(kb / 1024.0)
        };
        Ok((field("VmHWM")?, field("VmRSS")?))
    }

    /// Stop with SIGTERM and wait (up to `timeout`) for a clean exit.
    pub fn stop(mut self, timeout: Duration) -> Result<()> {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        let rc = unsafe { libc_kill(pid, SIGTERM) };
        if rc != 0 {
            bail!("cannot send SIGTERM to herald serve ({pid})");
        }
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                let tail = self.stderr_tail();
                if !status.success() {
                    bail!("herald serve exited with {status} after SIGTERM; its stderr ends with:\n{tail}");
                }
                return Ok(());
            }
            if started.elapsed() > timeout {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("herald serve did not stop within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

const SIGTERM: i32 = 15;
extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// The 10-rule deployment the memory benchmark serves: four date rules
/// (two on `renews_at` for paid customers, two on `trial_ends_at` for
/// trials), one on creation, five on events, all to the inbox.
pub fn ten_rule_config(db: &str) -> String {
    let mut rules = String::new();
    let mut rule = |id: &str, trigger: &str| {
        rules.push_str(&format!(
            "[[rules]]\nid = \"{id}\"\ntrigger = {trigger}\nchannels = [\"inbox\"]\nsubject = \"{id} for {{{{ customer.name }}}}\"\ntext = \"Hello {{{{ customer.name }}}}: {id}.\"\n\n"
        ));
    };
    rule("welcome", "{ on = \"created\" }");
    rule(
        "renewal",
        "{ on = \"date\", attribute = \"renews_at\", before = \"7d\", every = \"1y\" }",
    );
    rule(
        "renewal-day",
        "{ on = \"date\", attribute = \"renews_at\", every = \"1y\" }",
    );
    rule(
        "trial-ending",
        "{ on = \"date\", attribute = \"trial_ends_at\", before = \"3d\" }",
    );
    rule(
        "trial-ended",
        "{ on = \"date\", attribute = \"trial_ends_at\" }",
    );
    for kind in ["payment", "refund", "ticket", "login", "export"] {
        rule(
            &format!("on-{kind}"),
            &format!("{{ on = \"event\", kind = \"{kind}\" }}"),
        );
    }
    format!(
        "# Written by `herald bench`.\n[database]\npath = \"{db}\"\n\n[scheduler]\ntick = \"{TICK_MS}ms\"\n\n[channels.inbox]\nbuiltin = \"inbox\"\n\n[attributes]\nrenews_at = \"date\"\ntrial_ends_at = \"date\"\n\n[strategy]\ndefault_time = \"10:00\"\ndefault_timezone = \"UTC\"\n\n{rules}"
    )
}

/// Create the deployment's database at `db`, opened once by the engine with
/// `config` while it is empty: migrated, and the strategy's fingerprint
/// recorded, so the serve child does not re-plan every customer at start
/// (which it does, before listening, for a strategy it has not seen).
pub async fn create_db(config: &Path, db: &Path, now: DateTime<Utc>) -> Result<()> {
    let config = herald::config::Config::load(config)?;
    let herald = herald::engine::Herald::open(
        &config,
        herald::engine::OpenOptions {
            db: Some(Location::Embedded(db.to_path_buf())),
            clock: std::sync::Arc::new(herald::clock::VirtualClock::new(now)),
            http_mode: herald::plugin::http_policy::HttpMode::Live,
        },
    )
    .await?;
    probe::close(&herald.store).await;
    Ok(())
}

/// Seed `db` (already migrated) with `customers` paid and trial customers
/// and their planned reminders ([`probe::seed_paid_and_trial`]); returns
/// how many are due at `now`.
pub async fn populate(db: &Path, customers: u64, now: DateTime<Utc>) -> Result<u64> {
    let store = Store::open(&Location::Embedded(db.to_path_buf())).await?;
    let due = probe::seed_paid_and_trial(&store, customers, now).await?;
    probe::settle(&store).await?;
    probe::close(&store).await;
    Ok(due)
}

/// Count `what` in the database at `db` (which another process may be writing).
pub async fn count(db: &Path, what: Count<'_>) -> Result<i64> {
    let store = Store::open(&Location::Embedded(db.to_path_buf())).await?;
    let n = probe::count(&store, what).await?;
    probe::close(&store).await;
    Ok(n)
}

/// Run the memory benchmark and print its figures. `now` is the wall-clock
/// time the child will run at (it serves on the system clock).
pub async fn rss_bench(customers: u64, now: DateTime<Utc>) -> Result<()> {
    if customers < 100 {
        bail!("--rss-customers must be at least 100");
    }
    let scratch = tempfile::Builder::new()
        .prefix("herald-bench-rss-")
        .tempdir()
        .context("cannot create a scratch directory")?;
    let db: PathBuf = scratch.path().join("serve.db");
    let config = scratch.path().join("herald.toml");
    std::fs::write(&config, ten_rule_config("serve.db"))
        .context("cannot write the serve config")?;
    let started = Instant::now();
    create_db(&config, &db, now).await?;
    let due = populate(&db, customers, now).await?;
    let build_s = started.elapsed().as_secs_f64();
    let planned = count(&db, Count::Scheduled).await?;
    eprintln!(
        "rss: {customers} customers and {planned} planned reminders ({due} due) built in {build_s:.1} s"
    );
    let started = Instant::now();
    let serve = ServeChild::start(&config, &db, &[], Duration::from_secs(120))?;
    eprintln!(
        "rss: herald serve (pid {}) listening on {} after {:.1} s",
        serve.pid(),
        serve.base,
        started.elapsed().as_secs_f64()
    );
    // Wait for the due reminders to go out, then a few more ticks.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = count(&db, Count::Done).await?;
        if done >= due as i64 {
            break;
        }
        if Instant::now() > deadline {
            bail!("herald serve delivered {done} of {due} due reminders in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delivered_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(TICK_MS * 5)).await;
    let (hwm, rss) = serve.memory_mb()?;
    serve.stop(Duration::from_secs(30))?;
    let inbox = count(&db, Count::InboxMessages).await?;
    if inbox != due as i64 {
        bail!("herald serve put {inbox} messages in inboxes; {due} were due");
    }
    println!("rss_customers={customers}");
    println!("rss_rules=10");
    println!("rss_planned_reminders={planned}");
    println!("rss_due_delivered={due}");
    println!("rss_serve_seconds={delivered_s:.2}");
    println!("rss_mb={rss:.1}");
    println!("hwm_mb={hwm:.1}");
    let key = if customers == 1_000_000 {
        "rss_mb_1m_customers".to_string()
    } else {
        format!("rss_mb_{customers}_customers")
    };
    println!("{key}={rss:.1}");
    Ok(())
}
