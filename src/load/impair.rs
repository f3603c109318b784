//! A seeded network impairment, sans-IO: what `tc netem` does to one direction of a link, for a
//! kernel without it. Packets go in with [`Impairer::push`] and come out of
//! [`Impairer::pop_due`] when the impaired network would have delivered them: some lost (alone,
//! or in bursts), all delayed by a base delay plus jitter, a few held back so that later
//! packets overtake them, a few delivered twice. Delay keeps the order of the packets a queue
//! would keep (jitter from queueing never reorders); only the reordered ones break it. The same
//! seed and the same input times give the same output, so a failing run can be replayed.
//!
//! `sipbridge load --impair-sip` / `--impair-rtp` put one in each direction of the caller's
//! sockets: everything the caller sends and receives, the gateway's own in-dialog requests
//! included, crosses the impaired link, which a relay in front of the gateway could not
//! arrange (those requests go to the caller's Contact, not back through the relay).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What one direction of the link does, e.g. `loss=5%,jitter=40ms,reorder=2%,dup=1%`. The
/// default is a clear link, what an empty spec parses to.
#[derive(Clone, Debug, PartialEq)]
pub struct ImpairSpec {
    /// Probability that a packet is lost (0 to 1).
    pub loss: f64,
    /// Mean length of a run of losses: 1 is independent loss; more makes losses come in
    /// bursts of that mean length (a two-state Gilbert model) at the same average `loss`.
    pub burst: f64,
    /// Delay every packet takes.
    pub delay: Duration,
    /// Extra delay, uniform between zero and this, order kept.
    pub jitter: Duration,
    /// Probability that a packet is held back by `reorder_by`, letting later ones pass it.
    pub reorder: f64,
    pub reorder_by: Duration,
    /// Probability that a packet is delivered twice.
    pub duplicate: f64,
}

impl Default for ImpairSpec {
    fn default() -> Self {
        ImpairSpec {
            loss: 0.0,
            burst: 1.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder: 0.0,
            reorder_by: Duration::from_millis(50),
            duplicate: 0.0,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct SpecError(String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

impl ImpairSpec {
    /// Parses `key=value` pairs separated by commas: `loss`, `reorder`, `dup` as percentages
    /// (`5%` or `5`), `burst` as a mean run length, `delay`, `jitter` and `reorder_by` as
    /// durations (`40ms`, `1s`).
    pub fn parse(text: &str) -> Result<ImpairSpec, SpecError> {
        let mut s = ImpairSpec::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| SpecError(format!("{part:?}: expected key=value")))?;
            let (key, value) = (key.trim(), value.trim());
            match key {
                "loss" => s.loss = percent(key, value)?,
                "reorder" => s.reorder = percent(key, value)?,
                "dup" => s.duplicate = percent(key, value)?,
                "burst" => {
                    s.burst = value
                        .parse::<f64>()
                        .ok()
                        .filter(|b| b.is_finite() && *b >= 1.0)
                        .ok_or_else(|| SpecError(format!("burst={value}: a mean run >= 1")))?
                }
                "delay" => s.delay = duration(key, value)?,
                "jitter" => s.jitter = duration(key, value)?,
                "reorder_by" => s.reorder_by = duration(key, value)?,
                _ => {
                    return Err(SpecError(format!(
                        "{key}: unknown (loss, burst, delay, jitter, reorder, reorder_by, dup)"
                    )))
                }
            }
        }
        if s.loss >= 1.0 {
            return Err(SpecError("loss=100% leaves no link".into()));
        }
        Ok(s)
    }
}

fn percent(key: &str, value: &str) -> Result<f64, SpecError> {
    value
        .strip_suffix('%')
        .unwrap_or(value)
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|p| (0.0..=100.0).contains(p))
        .map(|p| p / 100.0)
        .ok_or_else(|| SpecError(format!("{key}={value}: a percentage from 0 to 100")))
}

fn duration(key: &str, value: &str) -> Result<Duration, SpecError> {
    let bad = || SpecError(format!("{key}={value}: a duration such as 40ms or 1s"));
    let (number, unit) = match value.strip_suffix("ms") {
        Some(n) => (n, 0.001),
        None => (value.strip_suffix('s').ok_or_else(bad)?, 1.0),
    };
    let n: f64 = number.trim().parse().map_err(|_| bad())?;
    if !(n.is_finite() && n >= 0.0 && n * unit <= 60.0) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(n * unit))
}

/// What an impairer did, for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImpairStats {
    pub offered: u64,
    pub lost: u64,
    pub reordered: u64,
    pub duplicated: u64,
}

/// One direction of an impaired link, carrying packets of type `T`.
pub struct Impairer<T> {
    spec: ImpairSpec,
    rng: StdRng,
    /// In the loss burst (the Gilbert model's bad state).
    bad: bool,
    /// When the last in-order packet leaves: later ones never leave before it.
    last_due: Option<Instant>,
    queue: BinaryHeap<Reverse<Queued<T>>>,
    seq: u64,
    stats: ImpairStats,
}

struct Queued<T> {
    due: Instant,
    seq: u64,
    packet: T,
}

impl<T> PartialEq for Queued<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl<T> Eq for Queued<T> {}
impl<T> PartialOrd for Queued<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Queued<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

impl std::ops::AddAssign for ImpairStats {
    fn add_assign(&mut self, o: ImpairStats) {
        self.offered += o.offered;
        self.lost += o.lost;
        self.reordered += o.reordered;
        self.duplicated += o.duplicated;
    }
}

impl<T: Clone> Impairer<T> {
    pub fn new(spec: ImpairSpec, seed: u64) -> Impairer<T> {
        Impairer {
            spec,
            rng: StdRng::seed_from_u64(seed),
            bad: false,
            last_due: None,
            queue: BinaryHeap::new(),
            seq: 0,
            stats: ImpairStats::default(),
        }
    }

    pub fn stats(&self) -> ImpairStats {
        self.stats
    }

    /// A packet enters the link at `now`. Returns false when the link lost it.
    pub fn push(&mut self, now: Instant, packet: T) -> bool {
        self.stats.offered += 1;
        if self.lose() {
            self.stats.lost += 1;
            return false;
        }
        let jitter = self.spec.jitter.mul_f64(self.rng.random::<f64>());
        let mut due = now + self.spec.delay + jitter;
        if self.spec.reorder > 0.0 && self.rng.random::<f64>() < self.spec.reorder {
            // Held back outside the queue's order, so the packets behind it pass.
            self.stats.reordered += 1;
            due += self.spec.reorder_by;
        } else {
            due = due.max(self.last_due.unwrap_or(due));
            self.last_due = Some(due);
        }
        if self.spec.duplicate > 0.0 && self.rng.random::<f64>() < self.spec.duplicate {
            self.stats.duplicated += 1;
            self.enqueue(due, packet.clone());
        }
        self.enqueue(due, packet);
        true
    }

    /// The next packet the link delivers by `now`, in delivery order.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        if self.queue.peek().is_some_and(|Reverse(q)| q.due <= now) {
            return self.queue.pop().map(|Reverse(q)| q.packet);
        }
        None
    }

    /// When the next packet is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(q)| q.due)
    }

    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    fn enqueue(&mut self, due: Instant, packet: T) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            due,
            seq: self.seq,
            packet,
        }));
    }

    /// The two-state Gilbert model: from the good state a loss run starts with probability
    /// `p`, and each run lasts `burst` packets on average (it ends with probability
    /// `1/burst`), so the long-run loss is `loss`. `burst` 1 is independent (Bernoulli) loss.
    fn lose(&mut self) -> bool {
        let loss = self.spec.loss;
        if loss <= 0.0 {
            return false;
        }
        if self.spec.burst <= 1.0 {
            return self.rng.random::<f64>() < loss;
        }
        let r = 1.0 / self.spec.burst;
        let p = (loss * r / (1.0 - loss)).min(1.0);
        let roll = self.rng.random::<f64>();
        self.bad = if self.bad { roll >= r } else { roll < p };
        self.bad
    }
}

#[cfg(test)]
mod tests;
