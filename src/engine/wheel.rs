//! The reactor's timer wheel: every call has at most one live deadline (its media session's
//! next one), and thousands of them fall within the next 20 ms. Slots are 250 µs wide, so a
//! deadline fires within a quarter millisecond of its instant and calls answered at different
//! times keep their own phases instead of being bunched onto a millisecond grid.
//!
//! Entries are never removed when a call moves its deadline: the call remembers the deadline it
//! last scheduled and the reactor ignores an entry that no longer matches it. Every stale entry
//! is dropped when its slot comes round, so the wheel holds at most the entries scheduled
//! within one deadline horizon.

use std::time::{Duration, Instant};

pub const SLOT: Duration = Duration::from_micros(250);
/// 1,024 slots: a 256 ms revolution. Later deadlines (media timeouts) wait in their slot for
/// their round; a call always has a pacer deadline within 20 ms, so they are rare.
const SLOTS: u64 = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: u64,
    pub deadline: Instant,
}

pub struct Wheel {
    origin: Instant,
    /// The first tick not yet fully processed.
    cursor: u64,
    slots: Vec<Vec<Entry>>,
    len: usize,
}

impl Wheel {
    pub fn new(now: Instant) -> Wheel {
        Wheel {
            origin: now,
            cursor: 0,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            len: 0,
        }
    }

    fn tick(&self, t: Instant) -> u64 {
        (t.saturating_duration_since(self.origin).as_nanos() / SLOT.as_nanos()) as u64
    }

    /// Entries held, stale ones included.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn insert(&mut self, key: u64, deadline: Instant) {
        // A deadline in the past goes in the current slot: it fires at the next expiry.
        let tick = self.tick(deadline).max(self.cursor);
        self.slots[(tick % SLOTS) as usize].push(Entry { key, deadline });
        self.len += 1;
    }

    /// The earliest deadline held within the next revolution, or the end of that revolution
    /// when only later ones are held (waking then costs one scan); `None` when empty.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        let horizon = self.cursor + SLOTS;
        for tick in self.cursor..horizon {
            let slot = &self.slots[(tick % SLOTS) as usize];
            let due = slot
                .iter()
                .filter(|e| self.tick(e.deadline) <= tick)
                .map(|e| e.deadline)
                .min();
            if due.is_some() {
                return due;
            }
        }
        Some(self.origin + SLOT * horizon as u32)
    }

    /// Moves every entry due at `now` into `out`.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<Entry>) {
        let now_tick = self.tick(now);
        // A long sleep (an idle reactor) passes over each slot once, not once per tick.
        let last = now_tick.min(self.cursor + SLOTS - 1);
        for tick in self.cursor..=last {
            let slot = &mut self.slots[(tick % SLOTS) as usize];
            let before = slot.len();
            let mut i = 0;
            while i < slot.len() {
                if slot[i].deadline <= now {
                    out.push(slot.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            self.len -= before - slot.len();
        }
        // The current tick's slot may still hold entries due later within it.
        self.cursor = now_tick;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: f64) -> Duration {
        Duration::from_secs_f64(n / 1000.0)
    }

    #[test]
    fn fires_each_deadline_at_its_own_instant_not_a_millisecond_grid() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        w.insert(1, t0 + ms(20.3));
        w.insert(2, t0 + ms(20.6));
        w.insert(3, t0 + ms(19.9));
        assert_eq!(w.next_deadline(), Some(t0 + ms(19.9)));
        let mut out = Vec::new();
        w.expire(t0 + ms(19.95), &mut out);
        assert_eq!(out.iter().map(|e| e.key).collect::<Vec<_>>(), vec![3]);
        assert_eq!(w.next_deadline(), Some(t0 + ms(20.3)));
        out.clear();
        w.expire(t0 + ms(20.4), &mut out);
        assert_eq!(out.iter().map(|e| e.key).collect::<Vec<_>>(), vec![1]);
        out.clear();
        w.expire(t0 + ms(20.6), &mut out);
        assert_eq!(out.iter().map(|e| e.key).collect::<Vec<_>>(), vec![2]);
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn an_entry_within_a_slot_waits_for_its_instant() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        // Both in the slot of 5.0-5.25 ms.
        w.insert(1, t0 + ms(5.05));
        w.insert(2, t0 + ms(5.2));
        let mut out = Vec::new();
        w.expire(t0 + ms(5.1), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(w.next_deadline(), Some(t0 + ms(5.2)));
        w.expire(t0 + ms(5.2), &mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn deadlines_beyond_a_revolution_wait_for_their_round() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        w.insert(9, t0 + Duration::from_secs(15));
        // Only a far deadline: wake at the end of the revolution to look again.
        assert_eq!(w.next_deadline(), Some(t0 + SLOT * SLOTS as u32));
        let mut out = Vec::new();
        let mut t = t0;
        while t < t0 + Duration::from_secs(15) {
            w.expire(t, &mut out);
            assert!(out.is_empty(), "fired early at {:?}", t - t0);
            t += ms(7.0);
        }
        w.expire(t0 + Duration::from_secs(15), &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_long_sleep_fires_everything_overdue_once() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        for k in 0..100 {
            w.insert(k, t0 + ms(k as f64 * 3.1));
        }
        let mut out = Vec::new();
        w.expire(t0 + Duration::from_secs(10), &mut out);
        let mut keys: Vec<u64> = out.iter().map(|e| e.key).collect();
        keys.sort();
        assert_eq!(keys, (0..100).collect::<Vec<_>>());
        assert!(w.is_empty());
    }

    #[test]
    fn a_past_deadline_fires_at_the_next_expiry() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0);
        let mut out = Vec::new();
        w.expire(t0 + ms(50.0), &mut out);
        w.insert(1, t0 + ms(10.0));
        assert_eq!(w.next_deadline(), Some(t0 + ms(10.0)));
        w.expire(t0 + ms(50.0), &mut out);
        assert_eq!(out.len(), 1);
    }
}
