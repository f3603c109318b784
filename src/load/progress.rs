//! The live one-line progress display on stderr, drawn only when stderr is a terminal (a log
//! file or a pipe gets nothing, so scripts see only the summary).

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Redraw at most this often: a terminal cannot show faster, and each draw is a syscall.
const REDRAW: Duration = Duration::from_millis(250);
/// Current calls per second are the starts within this window.
const CPS_WINDOW: Duration = Duration::from_secs(1);

/// Counts shown on the line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub planned: u32,
    pub started: u32,
    pub active: usize,
    pub completed: u64,
    pub failed: u64,
}

pub struct Progress {
    enabled: bool,
    last_draw: Option<Instant>,
    starts: VecDeque<Instant>,
    drawn: bool,
}

impl Progress {
    /// Enabled when stderr is a terminal.
    pub fn for_stderr() -> Progress {
        Progress::new(std::io::stderr().is_terminal())
    }

    pub fn new(enabled: bool) -> Progress {
        Progress {
            enabled,
            last_draw: None,
            starts: VecDeque::new(),
            drawn: false,
        }
    }

    pub fn call_started(&mut self, now: Instant) {
        if self.enabled {
            self.starts.push_back(now);
        }
    }

    /// Calls started during the last second.
    pub fn current_cps(&mut self, now: Instant) -> f64 {
        while self
            .starts
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) > CPS_WINDOW)
        {
            self.starts.pop_front();
        }
        self.starts.len() as f64 / CPS_WINDOW.as_secs_f64()
    }

    /// Redraws the line if it is time to.
    pub fn update(&mut self, now: Instant, elapsed: Duration, counts: Counts) {
        if !self.enabled || self.last_draw.is_some_and(|t| now - t < REDRAW) {
            return;
        }
        self.last_draw = Some(now);
        let cps = self.current_cps(now);
        let line = line(elapsed, counts, cps);
        let mut err = std::io::stderr().lock();
        // Carriage return and erase-line: the line is rewritten in place.
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        self.drawn = true;
    }

    /// Clears the line so the summary starts on a clean screen.
    pub fn finish(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

/// The progress line's text.
pub fn line(elapsed: Duration, c: Counts, cps: f64) -> String {
    format!(
        "[{:>6.1}s] calls {}/{}  active {}  completed {}  failed {}  {:.1} cps",
        elapsed.as_secs_f64(),
        c.started,
        c.planned,
        c.active,
        c.completed,
        c.failed,
        cps
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_every_count() {
        let c = Counts {
            planned: 200,
            started: 120,
            active: 97,
            completed: 20,
            failed: 3,
        };
        assert_eq!(
            line(Duration::from_millis(12_345), c, 49.5),
            "[  12.3s] calls 120/200  active 97  completed 20  failed 3  49.5 cps"
        );
    }

    #[test]
    fn cps_counts_the_last_second_only() {
        let mut p = Progress::new(true);
        let t0 = Instant::now();
        for i in 0..30 {
            p.call_started(t0 + Duration::from_millis(i * 50));
        }
        // Starts from 0.5 s to 1.45 s are within a second of 1.5 s: 20 of them.
        assert_eq!(p.current_cps(t0 + Duration::from_millis(1500)), 20.0);
        assert_eq!(p.current_cps(t0 + Duration::from_secs(10)), 0.0);
    }

    #[test]
    fn disabled_progress_keeps_nothing() {
        let mut p = Progress::new(false);
        p.call_started(Instant::now());
        assert_eq!(p.current_cps(Instant::now()), 0.0);
        p.update(Instant::now(), Duration::ZERO, Counts::default());
        assert!(!p.drawn);
    }
}
