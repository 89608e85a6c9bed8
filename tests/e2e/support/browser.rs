//! Headless Chromium for pages the tests check as a browser shows them: the
//! DOM after scripts ran (`--dump-dom`) and a screenshot decoded to pixels.

use super::text;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Chromium binary (`HERALD_TEST_CHROMIUM`, default `/usr/bin/chromium`);
/// panics with how to install it when it is missing.
fn chromium() -> String {
    let chromium =
        std::env::var("HERALD_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        panic!(
            "{}",
            std::env::var("HERALD_TEST_CHROMIUM_MISSING").unwrap_or_else(|_| format!(
                "no Chromium at {chromium}: run scripts/test as root (it installs Debian's `chromium`), or `apt-get install -y --no-install-recommends chromium`, or set HERALD_TEST_CHROMIUM"
            ))
        );
    }
    chromium
}

/// Run headless Chromium on `url` with `action` (`--dump-dom`,
/// `--screenshot=...`) in a throwaway profile; its stdout.
fn run_chromium(url: &str, action: &[String]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(action)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The DOM of `url` once its scripts have run.
pub fn chromium_dom(url: &str) -> String {
    run_chromium(url, &["--dump-dom".to_string()])
}

/// A file's `file://` URL.
pub fn file_url(path: &Path) -> String {
    format!(
        "file://{}",
        path.canonicalize().expect("absolute path").display()
    )
}

/// A screenshot of `url` in a `width` × `height` window.
pub struct Screenshot {
    pub width: u32,
    pub height: u32,
    /// RGB, row by row.
    pub rgb: Vec<[u8; 3]>,
    pub file: PathBuf,
}

impl Screenshot {
    /// Pixels exactly of colour `#rrggbb` (as CSS writes it).
    pub fn count(&self, hex: &str) -> usize {
        let hex = hex.trim_start_matches('#');
        let c = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex colour");
        let want = [c(0), c(2), c(4)];
        self.rgb.iter().filter(|p| **p == want).count()
    }
}

/// Take a screenshot of `url` into `file` (PNG) and decode it.
pub fn chromium_screenshot(url: &str, file: &Path, (width, height): (u32, u32)) -> Screenshot {
    run_chromium(
        url,
        &[
            format!("--screenshot={}", file.display()),
            format!("--window-size={width},{height}"),
            "--hide-scrollbars".to_string(),
            "--force-device-scale-factor=1".to_string(),
        ],
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(file).expect("chromium wrote the screenshot"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("image size")];
    let info = reader.next_frame(&mut buf).expect("decode the PNG");
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected screenshot colour type {other:?}"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let rgb = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    Screenshot {
        width: info.width,
        height: info.height,
        rgb,
        file: file.to_path_buf(),
    }
}

/// A headless Chromium driven over the DevTools protocol (on the pipe of
/// `--remote-debugging-pipe`: JSON messages ended by NUL on fds 3 and 4),
/// with one page whose scripts are switched off: it clicks and submits the
/// way a person does, so a form that needs no JavaScript is tested as such.
pub struct Browser {
    child: std::process::Child,
    commands: std::io::PipeWriter,
    messages: std::sync::mpsc::Receiver<serde_json::Value>,
    /// Events read while waiting for something else, oldest first.
    unclaimed: Vec<serde_json::Value>,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

/// How long one DevTools answer or page load may take.
const BROWSER_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

impl Browser {
    /// Start Chromium with a blank page, scripts disabled.
    pub fn open() -> Browser {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let profile = tempfile::tempdir().expect("profile dir");
        let (command_reader, commands) = std::io::pipe().expect("pipe");
        let (message_reader, message_writer) = std::io::pipe().expect("pipe");
        let (theirs_in, theirs_out) = (command_reader.as_raw_fd(), message_writer.as_raw_fd());
        let mut cmd = Command::new(chromium());
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        // SAFETY: only dup2/fcntl (async-signal-safe) between fork and exec;
        // the pipe ends go to fds 3 (commands in) and 4 (messages out), via
        // fds above 9 so neither overwrites the other.
        unsafe {
            cmd.pre_exec(move || {
                let high_in = libc::fcntl(theirs_in, libc::F_DUPFD, 10);
                let high_out = libc::fcntl(theirs_out, libc::F_DUPFD, 10);
                if high_in < 0
                    || high_out < 0
                    || libc::dup2(high_in, 3) < 0
                    || libc::dup2(high_out, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start chromium");
        drop((command_reader, message_writer));
        let (tx, messages) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut reader = std::io::BufReader::new(message_reader);
            let mut buf = Vec::new();
            while reader.read_until(0, &mut buf).is_ok_and(|n| n > 0) {
                buf.pop_if(|b| *b == 0);
                if let Ok(message) = serde_json::from_slice(&buf) {
                    if tx.send(message).is_err() {
                        break;
                    }
                }
                buf.clear();
            }
        });
        let mut browser = Browser {
            child,
            commands,
            messages,
            unclaimed: Vec::new(),
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = browser.call(
            "Target.createTarget",
            serde_json::json!({"url": "about:blank"}),
        );
        let attached = browser.call(
            "Target.attachToTarget",
            serde_json::json!({"targetId": target["targetId"], "flatten": true}),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_string();
        browser.call("Page.enable", serde_json::json!({}));
        browser.call(
            "Emulation.setScriptExecutionDisabled",
            serde_json::json!({"value": true}),
        );
        browser
    }

    /// Send a command (to the page once attached) and wait for its result.
    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        use std::io::Write;
        self.next_id += 1;
        let id = self.next_id;
        let mut message = serde_json::json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = self.session.clone().into();
        }
        let mut bytes = serde_json::to_vec(&message).expect("json");
        bytes.push(0);
        self.commands.write_all(&bytes).expect("write to chromium");
        let answer = self.wait(|m| m["id"] == id);
        if let Some(error) = answer.get("error") {
            panic!("chromium refused {method}: {error}");
        }
        answer["result"].clone()
    }

    /// The first message `matches` accepts, among those kept from earlier
    /// waits and then new ones (the others are kept for later waits).
    fn wait(&mut self, matches: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        if let Some(at) = self.unclaimed.iter().position(&matches) {
            return self.unclaimed.remove(at);
        }
        let deadline = std::time::Instant::now() + BROWSER_WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(m) if matches(&m) => return m,
                Ok(m) if m.get("method").is_some() => self.unclaimed.push(m),
                Ok(_) => {}
                Err(e) => panic!("no answer from chromium within {BROWSER_WAIT:?}: {e}"),
            }
        }
    }

    fn wait_for_load(&mut self) {
        self.wait(|m| m["method"] == "Page.loadEventFired");
    }

    /// Load `url` and wait until it has loaded.
    pub fn navigate(&mut self, url: &str) {
        self.unclaimed.clear();
        self.call("Page.navigate", serde_json::json!({"url": url}));
        self.wait_for_load();
    }

    /// Click the middle of the element `selector` names, as a mouse does.
    pub fn click(&mut self, selector: &str) {
        let root =
            self.call("DOM.getDocument", serde_json::json!({"depth": 0}))["root"]["nodeId"].clone();
        let node = self.call(
            "DOM.querySelector",
            serde_json::json!({"nodeId": root, "selector": selector}),
        )["nodeId"]
            .clone();
        assert_ne!(node, 0, "no element matches `{selector}` on the page");
        self.call(
            "DOM.scrollIntoViewIfNeeded",
            serde_json::json!({"nodeId": node}),
        );
        let quad = self.call("DOM.getBoxModel", serde_json::json!({"nodeId": node}))["model"]
            ["content"]
            .clone();
        let at = |i: usize| quad[i].as_f64().expect("a box");
        let (x, y) = ((at(0) + at(4)) / 2.0, (at(1) + at(5)) / 2.0);
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                serde_json::json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }

    /// Click `selector` (a submit button) and wait for the page it leads to.
    pub fn submit(&mut self, selector: &str) {
        self.unclaimed.clear();
        self.click(selector);
        self.wait_for_load();
    }

    /// The page's HTML as the browser holds it now.
    pub fn html(&mut self) -> String {
        let root =
            self.call("DOM.getDocument", serde_json::json!({"depth": 0}))["root"]["nodeId"].clone();
        self.call("DOM.getOuterHTML", serde_json::json!({"nodeId": root}))["outerHTML"]
            .as_str()
            .expect("html")
            .to_string()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
