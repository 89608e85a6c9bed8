//! The log capability of `herald:plugin/host`: a plugin's lines go to the
//! host's log attributed to its channel, with secrets masked, each line cut
//! to [`bounds::MAX_LOG_LINE`] and each call (one send, callback or
//! describe) held to [`MAX_LINES_PER_CALL`] lines and [`MAX_BYTES_PER_CALL`]
//! bytes; past that, one "log truncated" line and the rest dropped, so a
//! plugin cannot flood the host's log or its disk.
//!
//! Owns the quota of a call; the store state holds one and resets it for
//! every call.

use super::bindings::host_api::LogLevel;
use super::bounds;
use super::redact::redact_owned;

/// The most log lines one call may write.
pub const MAX_LINES_PER_CALL: usize = 256;
/// The most log bytes one call may write (lines after their cut).
pub const MAX_BYTES_PER_CALL: usize = 64 * 1024;

/// What one call has logged so far.
#[derive(Debug, Default)]
pub(crate) struct LogQuota {
    lines: usize,
    bytes: usize,
    cut_off: bool,
}

/// What becomes of a line.
#[derive(Debug, PartialEq, Eq)]
enum Admit {
    /// Written.
    Write,
    /// Dropped, and the one "log truncated" line written instead.
    CutOff,
    /// Dropped silently: the call was cut off before.
    Drop,
}

impl LogQuota {
    /// Counts a line of `len` bytes (after its cut) against the quota.
    fn admit(&mut self, len: usize) -> Admit {
        if self.cut_off {
            return Admit::Drop;
        }
        let bytes = self.bytes.saturating_add(len);
        if self.lines >= MAX_LINES_PER_CALL || bytes > MAX_BYTES_PER_CALL {
            self.cut_off = true;
            return Admit::CutOff;
        }
        self.lines += 1;
        self.bytes = bytes;
        Admit::Write
    }

    /// Writes `message` from the plugin of `channel` at `level`, if the
    /// quota allows: secrets masked first, then cut.
    pub(crate) fn write(
        &mut self,
        channel: &str,
        level: LogLevel,
        message: String,
        secrets: &[String],
    ) {
        if self.cut_off {
            return;
        }
        let message = bounds::cut(redact_owned(message, secrets), bounds::MAX_LOG_LINE);
        match self.admit(message.len()) {
            Admit::Write => emit(channel, level, &message),
            Admit::CutOff => tracing::warn!(
                target: "herald::plugin",
                channel,
                "log truncated: this call of the plugin wrote more than {MAX_LINES_PER_CALL} lines or {MAX_BYTES_PER_CALL} bytes; the rest of its log is dropped"
            ),
            Admit::Drop => {}
        }
    }
}

fn emit(channel: &str, level: LogLevel, message: &str) {
    match level {
        LogLevel::Trace => tracing::trace!(target: "herald::plugin", channel, "{message}"),
        LogLevel::Debug => tracing::debug!(target: "herald::plugin", channel, "{message}"),
        LogLevel::Info => tracing::info!(target: "herald::plugin", channel, "{message}"),
        LogLevel::Warn => tracing::warn!(target: "herald::plugin", channel, "{message}"),
        LogLevel::Error => tracing::error!(target: "herald::plugin", channel, "{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_cut_off_once_past_its_lines_or_bytes() {
        let mut quota = LogQuota::default();
        for _ in 0..MAX_LINES_PER_CALL {
            assert_eq!(quota.admit(0), Admit::Write);
        }
        assert_eq!(quota.admit(0), Admit::CutOff);
        assert_eq!(quota.admit(0), Admit::Drop);

        let mut quota = LogQuota::default();
        let line = bounds::MAX_LOG_LINE;
        for _ in 0..MAX_BYTES_PER_CALL / line {
            assert_eq!(quota.admit(line), Admit::Write);
        }
        assert_eq!(quota.admit(1), Admit::CutOff);
        assert_eq!(quota.admit(1), Admit::Drop);
    }
}
