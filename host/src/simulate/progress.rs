//! The progress of a long simulation on stderr: a bar over the simulated
//! period with the customers simulated, the date reached and the rate in
//! customer-years per second. Shown only when stderr is a terminal, so logs
//! and pipes stay clean. Owns the display only; may not touch the engine.

use super::shards::Progress;
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Seconds in a year of 365 days, for customer-years.
const YEAR_SECONDS: f64 = 365.0 * 86_400.0;

/// A progress bar for a simulation of `customers` from `from` to `until`.
pub struct Bar {
    bar: ProgressBar,
    from: DateTime<Utc>,
    customers: usize,
    started: Instant,
    last_drawn: Instant,
}

impl Bar {
    /// A bar on stderr when it is a terminal, a hidden one otherwise.
    pub fn new(customers: usize, from: DateTime<Utc>, until: DateTime<Utc>) -> Bar {
        let seconds = (until - from).num_seconds().max(1) as u64;
        let bar = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(seconds);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {percent:>3}% {msg} [{elapsed_precise}]")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        } else {
            ProgressBar::hidden()
        };
        let now = Instant::now();
        Bar {
            bar,
            from,
            customers,
            started: now,
            last_drawn: now,
        }
    }

    /// Show where the shards are (at most ten times a second).
    pub fn update(&mut self, progress: &Progress) {
        if self.bar.is_hidden() || self.last_drawn.elapsed() < Duration::from_millis(100) {
            return;
        }
        self.last_drawn = Instant::now();
        let reached = progress.reached();
        let simulated = (reached - self.from).num_seconds().max(0);
        self.bar.set_position(simulated as u64);
        self.bar.set_message(message(
            self.customers,
            reached,
            simulated as f64,
            self.started.elapsed().as_secs_f64(),
        ));
    }

    /// Remove the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// "100000 customers · 2026-05-04 · 812 customer-years/s".
fn message(customers: usize, reached: DateTime<Utc>, simulated_s: f64, wall_s: f64) -> String {
    let rate = if wall_s > 0.0 {
        customers as f64 * simulated_s / YEAR_SECONDS / wall_s
    } else {
        0.0
    };
    format!(
        "{customers} customers · {} · {rate:.0} customer-years/s",
        reached.format("%Y-%m-%d")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_message_says_customers_date_and_rate() {
        let reached = Utc.with_ymd_and_hms(2026, 7, 2, 12, 0, 0).unwrap();
        let text = message(1000, reached, YEAR_SECONDS / 2.0, 0.5);
        assert_eq!(text, "1000 customers · 2026-07-02 · 1000 customer-years/s");
    }
}
