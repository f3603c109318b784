//! Rejections logged without letting a stranger write the log: the first of each kind from a
//! source is logged at once, repeats within the window are only counted, and one line per
//! source and kind sums them up when the window has passed. The table is bounded; what does not
//! fit is counted together and summed up the same way.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub struct Quiet {
    window: Duration,
    max: usize,
    /// (source, kind) -> (start of its window, repeats since).
    open: HashMap<(IpAddr, &'static str), (Instant, u64)>,
    /// Repeats from sources the table had no room for, this window.
    overflow: u64,
    last_sweep: Instant,
}

impl Quiet {
    pub fn new(now: Instant, window: Duration, max: usize) -> Quiet {
        Quiet {
            window,
            max,
            open: HashMap::new(),
            overflow: 0,
            last_sweep: now,
        }
    }

    /// Whether to log this rejection now (the first of its window); a repeat is only counted.
    pub fn first(&mut self, now: Instant, ip: IpAddr, kind: &'static str) -> bool {
        if now.saturating_duration_since(self.last_sweep) >= self.window {
            self.sweep(now);
        }
        if let Some((_, n)) = self.open.get_mut(&(ip, kind)) {
            *n += 1;
            return false;
        }
        if self.open.len() >= self.max {
            self.overflow += 1;
            return false;
        }
        self.open.insert((ip, kind), (now, 0));
        true
    }

    /// Closes the windows that have passed, with one summary line each that saw repeats.
    fn sweep(&mut self, now: Instant) {
        self.last_sweep = now;
        let window = self.window;
        self.open.retain(|(ip, kind), (since, n)| {
            let open = now.saturating_duration_since(*since) < window;
            if !open && *n > 0 {
                tracing::warn!(
                    %ip,
                    kind,
                    repeats = *n,
                    window_secs = window.as_secs(),
                    "the same rejection again and again from one source (logged once per window)"
                );
            }
            open
        });
        if self.overflow > 0 {
            tracing::warn!(
                repeats = self.overflow,
                window_secs = window.as_secs(),
                "rejections from too many sources to log each (counted in the metrics)"
            );
            self.overflow = 0;
        }
    }

    /// (source, kind) pairs whose window is open.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_source_and_kind_per_window_and_bounded() {
        let t0 = Instant::now();
        let mut q = Quiet::new(t0, Duration::from_secs(60), 3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(q.first(t0, a, "auth_failed"));
        assert!(!q.first(t0, a, "auth_failed"));
        assert!(q.first(t0, a, "no_trunk"), "another kind is its own line");
        assert!(q.first(t0, b, "auth_failed"));
        // Full: a fourth pair is counted, not logged.
        assert!(!q.first(t0, "192.0.2.3".parse().unwrap(), "auth_failed"));
        assert_eq!(q.open(), 3);
        // A window later, each source may be logged once more.
        let t1 = t0 + Duration::from_secs(61);
        assert!(q.first(t1, a, "auth_failed"));
        assert!(!q.first(t1, a, "auth_failed"));
        assert_eq!(q.open(), 1);
    }
}
