//! Fixed-size statistics and their Prometheus text rendering.
//!
//! A [`Histogram`] has a fixed set of bucket bounds (in microseconds, shown in seconds), so
//! observing a value is a few comparisons and additions and never allocates. The writers
//! here format straight into `io::Write` (a slice of the reply buffer): numbers with `write!`,
//! label values escaped per the Prometheus text format (`\\`, `\"`, `\n`).

use std::io::{self, Write};

/// Counters the daemon keeps (64-bit, never reset while it runs).
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Checks started.
    pub started: u64,
    /// Checks finished with a verdict.
    pub checks: u64,
    /// Checks that passed.
    pub passes: u64,
    /// Failures by reason (index as in [`crate::plugins::Reason::ALL`]).
    pub failures: [u64; crate::plugins::Reason::ALL.len()],
    /// Checks deferred for a local error (EMFILE, EADDRNOTAVAIL, no buffer...).
    pub local_errors: u64,
    /// Grid points skipped because the previous check was still running.
    pub missed_starts: u64,
    /// Transitions (UP/DOWN).
    pub transitions: u64,
    /// Events emitted (log lines), by any kind.
    pub events: u64,
    /// Largest start lateness seen, µs.
    pub max_lateness_us: u64,
    /// Sum of start lateness, µs (for a mean).
    pub sum_lateness_us: u64,
    /// IPVS operations by kind (index as in [`crate::ipvs::OpKind::ALL`]) that succeeded or were dry-run.
    pub ipvs_ok: [u64; 6],
    /// IPVS operations by kind that failed.
    pub ipvs_errors: [u64; 6],
    /// Of `ipvs_ok`, those that were only logged (`--dry-run`).
    pub ipvs_dry_run: [u64; 6],
    /// Check durations (connect to verdict).
    pub duration: Histogram,
    /// Check start lateness (start time minus scheduled time).
    pub lateness: Histogram,
    /// Notify events dropped because the queue was full.
    pub notify_dropped: u64,
    /// Event lines `notify-fifo` dropped because its reader was slow or absent.
    pub fifo_dropped: u64,
    /// Differences between the table and lvsmon's decisions found by resyncs (and repaired).
    pub drift_repaired: u64,
    /// Read-backs of the table completed.
    pub resyncs: u64,
    /// Weight changes of UP reals sent (lvsmon.conf(5), WEIGHTS).
    pub weight_changes: u64,
    /// `slow` events.
    pub slow_events: u64,
    /// `fast` events.
    pub fast_events: u64,
    /// Loop turns.
    pub turns: u64,
    /// Stalls of the loop (it woke over the loop's stall margin later than it asked to).
    pub loop_stalls: u64,
    /// Times the TLS helper was lost (exited, killed or hung) and restarted.
    pub tls_helper_restarts: u64,
}

/// Upper bounds of the histogram buckets, µs (the `+Inf` bucket comes on top). Finer from
/// 1 to 10 ms, where start lateness is judged (a p99 of 5 ms is a goal).
pub const BOUNDS_US: [u64; 20] = [
    100, 250, 500, 1_000, 2_000, 2_500, 3_000, 4_000, 5_000, 7_500, 10_000, 25_000, 50_000,
    100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A histogram of durations with the fixed bounds [`BOUNDS_US`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    pub buckets: [u64; BOUNDS_US.len() + 1],
    /// Sum of observations, µs.
    pub sum_us: u64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    /// Adds one observation of `us` microseconds.
    pub fn observe(&mut self, us: u64) {
        let i = BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BOUNDS_US.len());
        self.buckets[i] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
        self.count += 1;
    }

    /// Writes the `_bucket`, `_sum` and `_count` lines of family `name` (whose HELP and
    /// TYPE lines the caller wrote).
    ///
    /// # Errors
    /// The output is full.
    pub fn render(&self, name: &str, w: &mut impl Write) -> io::Result<()> {
        let mut cum = 0u64;
        for (i, b) in BOUNDS_US.iter().enumerate() {
            cum += self.buckets[i];
            write!(w, "{name}_bucket{{le=\"")?;
            seconds(w, *b)?;
            writeln!(w, "\"}} {cum}")?;
        }
        cum += self.buckets[BOUNDS_US.len()];
        writeln!(w, "{name}_bucket{{le=\"+Inf\"}} {cum}")?;
        write!(w, "{name}_sum ")?;
        seconds(w, self.sum_us)?;
        writeln!(w)?;
        writeln!(w, "{name}_count {}", self.count)
    }
}

/// Writes `us` microseconds as seconds with six decimals, trailing zeros removed.
///
/// # Errors
/// The output is full.
pub fn seconds(w: &mut impl Write, us: u64) -> io::Result<()> {
    let (s, f) = (us / 1_000_000, us % 1_000_000);
    if f == 0 {
        return write!(w, "{s}");
    }
    let mut frac = [0u8; 6];
    let mut v = f;
    for d in frac.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let n = frac.iter().rposition(|&d| d != b'0').map_or(0, |i| i + 1);
    write!(w, "{s}.")?;
    w.write_all(&frac[..n])
}

/// Writes a label value escaped for the Prometheus text format.
///
/// # Errors
/// The output is full.
pub fn label_value(w: &mut impl Write, v: &[u8]) -> io::Result<()> {
    for &b in v {
        match b {
            b'\\' => w.write_all(b"\\\\")?,
            b'"' => w.write_all(b"\\\"")?,
            b'\n' => w.write_all(b"\\n")?,
            _ => w.write_all(&[b])?,
        }
    }
    Ok(())
}

/// Writes a `# HELP` and a `# TYPE` line.
///
/// # Errors
/// The output is full.
pub fn family(w: &mut impl Write, name: &str, kind: &str, help: &str) -> io::Result<()> {
    writeln!(w, "# HELP {name} {help}")?;
    writeln!(w, "# TYPE {name} {kind}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut v = Vec::new();
        f(&mut v).unwrap();
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn seconds_format() {
        assert_eq!(text(|w| seconds(w, 0)), "0");
        assert_eq!(text(|w| seconds(w, 250)), "0.00025");
        assert_eq!(text(|w| seconds(w, 2_500_000)), "2.5");
        assert_eq!(text(|w| seconds(w, 10_000_000)), "10");
    }

    #[test]
    fn histogram_is_cumulative() {
        let mut h = Histogram::default();
        for us in [50, 100, 101, 3_000, 20_000_000] {
            h.observe(us);
        }
        let t = text(|w| h.render("x", w));
        assert!(t.contains("x_bucket{le=\"0.0001\"} 2\n"), "{t}");
        assert!(t.contains("x_bucket{le=\"0.00025\"} 3\n"));
        assert!(t.contains("x_bucket{le=\"0.005\"} 4\n"));
        assert!(t.contains("x_bucket{le=\"10\"} 4\n"));
        assert!(t.contains("x_bucket{le=\"+Inf\"} 5\n"));
        assert!(t.contains("x_sum 20.003251\n"));
        assert!(t.contains("x_count 5\n"));
    }

    #[test]
    fn label_escaping() {
        assert_eq!(text(|w| label_value(w, b"a\"b\\c\nd")), "a\\\"b\\\\c\\nd");
    }
}
