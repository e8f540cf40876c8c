//! Progress of a rebuild for the person running it: a bar with rate and time left on a
//! terminal, a plain line every few seconds otherwise (logs, CI, `| tee`).

use std::io::Write;
use std::time::{Duration, Instant};

/// How often a terminal's bar is redrawn, and how often a plain line is written.
const BAR_EVERY: Duration = Duration::from_millis(200);
const LINE_EVERY: Duration = Duration::from_secs(5);
const BAR_WIDTH: usize = 30;

pub struct Progress {
    out: Box<dyn Write + Send>,
    terminal: bool,
    phase: String,
    total: u64,
    done: u64,
    started: Instant,
    shown: Option<Instant>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("phase", &self.phase)
            .field("done", &self.done)
            .field("total", &self.total)
            .finish()
    }
}

impl Progress {
    /// Progress on stderr, drawn as a bar when stderr is a terminal.
    pub fn stderr() -> Progress {
        use std::io::IsTerminal;
        let terminal = std::io::stderr().is_terminal();
        Progress::to(Box::new(std::io::stderr()), terminal)
    }

    pub fn to(out: Box<dyn Write + Send>, terminal: bool) -> Progress {
        Progress {
            out,
            terminal,
            phase: String::new(),
            total: 0,
            done: 0,
            started: Instant::now(),
            shown: None,
        }
    }

    /// Starts a phase of `total` events.
    pub fn begin(&mut self, phase: &str, total: u64) {
        self.phase = phase.to_string();
        self.total = total;
        self.done = 0;
        self.started = Instant::now();
        self.shown = None;
        self.note(&format!("{phase}: {total} events to read"));
    }

    pub fn advance(&mut self, events: u64) {
        self.done += events;
        let every = if self.terminal { BAR_EVERY } else { LINE_EVERY };
        if self.shown.is_none_or(|at| at.elapsed() >= every) {
            self.show();
        }
    }

    /// Ends the phase with its final figures.
    pub fn finish(&mut self) {
        if self.terminal {
            self.show();
            let _ = writeln!(self.out);
        } else {
            let line = line(&self.phase, self.done, self.total, self.started.elapsed());
            let _ = writeln!(self.out, "{line}");
        }
    }

    /// A message of its own line (the bar, if any, is redrawn after it).
    pub fn note(&mut self, message: &str) {
        if self.terminal {
            let _ = write!(self.out, "\r\x1b[2K");
        }
        let _ = writeln!(self.out, "rebuild: {message}");
    }

    fn show(&mut self) {
        self.shown = Some(Instant::now());
        let elapsed = self.started.elapsed();
        let _ = if self.terminal {
            write!(
                self.out,
                "\r\x1b[2K{}",
                bar(&self.phase, self.done, self.total, elapsed)
            )
        } else {
            writeln!(
                self.out,
                "{}",
                line(&self.phase, self.done, self.total, elapsed)
            )
        };
        let _ = self.out.flush();
    }
}

fn rate(done: u64, elapsed: Duration) -> f64 {
    done as f64 / elapsed.as_secs_f64().max(0.001)
}

/// Seconds left at the rate so far, once there is a rate.
fn seconds_left(done: u64, total: u64, elapsed: Duration) -> Option<u64> {
    let rate = rate(done, elapsed);
    (done > 0 && rate > 0.0).then(|| (total.saturating_sub(done) as f64 / rate).ceil() as u64)
}

fn percent(done: u64, total: u64) -> u64 {
    (done.min(total) * 100).checked_div(total).unwrap_or(100)
}

/// `catch-up [############------------------]  40% 4000/10000  2000 events/s  3 s left`
pub fn bar(phase: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let filled = if total == 0 {
        BAR_WIDTH
    } else {
        (done.min(total) as usize * BAR_WIDTH) / total as usize
    };
    let left = seconds_left(done, total, elapsed).map_or("--".to_string(), |s| s.to_string());
    format!(
        "{phase} [{}{}] {:>3}% {done}/{total}  {:.0} events/s  {left} s left",
        "#".repeat(filled),
        "-".repeat(BAR_WIDTH - filled),
        percent(done, total),
        rate(done, elapsed),
    )
}

/// `rebuild: read 4000 of 10000 events (40%), 2000 events/s, about 3 s left`
pub fn line(phase: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let left =
        seconds_left(done, total, elapsed).map_or(String::new(), |s| format!(", about {s} s left"));
    format!(
        "rebuild: {phase}: {done} of {total} events ({}%), {:.0} events/s{left}",
        percent(done, total),
        rate(done, elapsed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_shows_share_rate_and_time_left() {
        let shown = bar("read", 4_000, 10_000, Duration::from_secs(2));
        assert_eq!(
            shown,
            "read [############------------------]  40% 4000/10000  2000 events/s  3 s left"
        );
        let empty = bar("read", 0, 0, Duration::from_secs(1));
        assert!(
            empty.contains("100%") && empty.contains("-- s left"),
            "{empty}"
        );
    }

    #[test]
    fn a_line_says_the_same_in_words() {
        assert_eq!(
            line("read", 4_000, 10_000, Duration::from_secs(2)),
            "rebuild: read: 4000 of 10000 events (40%), 2000 events/s, about 3 s left"
        );
        assert_eq!(
            line("read", 0, 10, Duration::from_secs(1)),
            "rebuild: read: 0 of 10 events (0%), 0 events/s"
        );
    }

    #[test]
    fn plain_output_has_no_terminal_controls() {
        #[derive(Clone, Default)]
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Shared::default();
        let mut progress = Progress::to(Box::new(out.clone()), false);
        progress.begin("read", 10);
        progress.advance(10);
        progress.finish();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains('\x1b') && !text.contains('\r'), "{text:?}");
        assert!(text.contains("rebuild: read: 10 events to read"), "{text}");
        assert!(text.contains("10 of 10 events (100%)"), "{text}");
    }
}
