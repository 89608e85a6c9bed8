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
