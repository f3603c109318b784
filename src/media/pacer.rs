//! The send clock of a call's audio towards the caller.
//!
//! Time is cut into 20 ms slots from the moment the call is answered. Slot `k` is due at its
//! deadline `t0 + 20 ms * (k + 1)`: it takes the agent's next frame if one comes by the deadline
//! plus a grace of 10 ms, otherwise comfort silence (Twilio offers no CN, and a silent RTP stream
//! looks like a dead call). A frame may be sent as soon as it is available, but never more than
//! two slots ahead of the clock.
//!
//! That rule gives both properties the gateway needs: an agent that delivers in real time (the
//! echo agent, or a stream from the far end) is relayed on arrival, whatever the phase of its
//! frames relative to our slots and with up to 20 ms of jitter on them (a frame early by less
//! than two slots goes at once; one late by less than the grace keeps its slot instead of being
//! replaced by silence); an agent that delivers in bursts (a TTS chunk of two seconds) is paced
//! out at exactly one frame per 20 ms, with at most two frames committed ahead, so barge-in can
//! drop the rest at once. The RTP timestamp is the slot number, so it follows the wall clock and
//! never drifts.

use std::time::{Duration, Instant};

pub const FRAME: Duration = Duration::from_millis(20);

/// Slots a frame may go ahead of the clock. One was enough for frames arriving evenly; under
/// load a caller's (and so the echo's) frames arrive with jitter, and with one slot an early
/// frame waited up to 20 ms for its window: the echo's round trip tail at 1,000 calls.
const AHEAD: u32 = 2;

/// How long past its deadline a slot waits for a frame before it is filled with silence: a frame
/// a little late keeps its slot instead of being replaced (and then pushing every later frame one
/// slot back).
const GRACE: Duration = Duration::from_millis(10);

/// When the task driving the clock fell this far behind (a stalled runtime), skip the missed
/// slots instead of bursting them out.
const MAX_BEHIND: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub struct Pacer {
    /// Deadline of the next slot to fill.
    deadline: Instant,
    /// Index of the next slot to fill.
    slot: u64,
}

/// What fills a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    Frame,
    Silence,
}

impl Pacer {
    pub fn new(now: Instant) -> Pacer {
        Pacer {
            deadline: now + FRAME,
            slot: 0,
        }
    }

    /// True when a frame handed over now may be sent now.
    pub fn slot_open(&self, now: Instant) -> bool {
        now + FRAME * AHEAD >= self.deadline
    }

    /// The next slot's index, for the RTP timestamp of the packet about to be sent.
    pub fn slot(&self) -> u64 {
        self.slot
    }

    /// Records that the next slot was filled.
    pub fn filled(&mut self, now: Instant) {
        self.slot += 1;
        self.deadline += FRAME;
        if now > self.deadline + MAX_BEHIND {
            let missed = (now - self.deadline).as_nanos() / FRAME.as_nanos() + 1;
            self.slot += missed as u64;
            self.deadline += FRAME * missed as u32;
        }
    }

    /// If the next slot's deadline and grace have passed with nothing sent, it needs comfort
    /// silence now.
    pub fn needs_silence(&self, now: Instant) -> bool {
        now >= self.deadline + GRACE
    }

    /// True when the next slot's deadline and grace passed more than `by` ago: whoever drives
    /// the clock is late, not the agent (the silence would have gone out on time).
    pub fn late_by(&self, now: Instant, by: Duration) -> bool {
        now >= self.deadline + GRACE + by
    }

    /// When the clock next needs attention: the window opening for a waiting frame, or a
    /// deadline that needs silence.
    pub fn next_wakeup(&self, frame_waiting: bool) -> Instant {
        if frame_waiting {
            self.deadline - FRAME * AHEAD
        } else {
            self.deadline + GRACE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn realtime_frames_are_sent_on_arrival_whatever_their_phase() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        // Frames arrive 7 ms into each slot: each is sent at once.
        for k in 0..50u64 {
            let arrival = t0 + ms(20 * k + 7);
            assert!(!p.needs_silence(arrival), "slot {k} starved");
            assert!(p.slot_open(arrival));
            assert_eq!(p.slot(), k);
            p.filled(arrival);
        }
    }

    #[test]
    fn frames_arriving_within_the_grace_keep_their_slots() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        // Every frame arrives 8 ms after its slot's deadline: still its own slot.
        for k in 0..50u64 {
            let arrival = t0 + ms(20 * k + 28);
            assert!(!p.needs_silence(arrival), "slot {k} replaced");
            assert!(p.slot_open(arrival));
            assert_eq!(p.slot(), k);
            p.filled(arrival);
        }
    }

    #[test]
    fn frames_arriving_after_the_grace_cost_one_silence_then_flow() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        // First frame arrives 0.5 ms after slot 0's deadline and grace: slot 0 gets silence.
        let first = t0 + ms(20) + GRACE + Duration::from_micros(500);
        assert!(p.needs_silence(first));
        p.filled(first);
        let mut silences = 1;
        for k in 0..50u64 {
            let arrival = first + ms(20 * k);
            if p.needs_silence(arrival) {
                silences += 1;
                p.filled(arrival);
            }
            assert!(p.slot_open(arrival));
            p.filled(arrival);
        }
        assert_eq!(silences, 1);
    }

    #[test]
    fn jittery_frames_are_sent_on_arrival() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        // Frames due every 20 ms arrive up to 15 ms early or 9 ms late, in a fixed pattern.
        let jitter = [-15i64, 9, 0, -12, 4, -3, 8, -15, -15, 9];
        for k in 0..200usize {
            let nominal = 20 * k as i64 + 10;
            let arrival = t0 + ms((nominal + jitter[k % jitter.len()]).max(0) as u64);
            assert!(!p.needs_silence(arrival), "slot {k} replaced");
            assert!(p.slot_open(arrival), "frame {k} waited");
            p.filled(arrival);
        }
    }

    #[test]
    fn bursts_are_paced_one_frame_per_slot() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        let now = t0 + ms(1);
        // Two frames of the burst go at once (two slots ahead at most)...
        for _ in 0..2 {
            assert!(p.slot_open(now));
            p.filled(now);
        }
        // ...the third waits for slot 2's window (opens at t0 + 20 ms), and so on.
        assert!(!p.slot_open(now));
        assert_eq!(p.next_wakeup(true), t0 + ms(20));
        assert!(p.slot_open(t0 + ms(20)));
        p.filled(t0 + ms(20));
        assert_eq!(p.next_wakeup(true), t0 + ms(40));
    }

    #[test]
    fn idle_agent_gets_silence_every_slot() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        let mut sent = 0;
        let mut now = t0;
        while now < t0 + ms(1000) {
            now = p.next_wakeup(false);
            assert!(p.needs_silence(now));
            p.filled(now);
            sent += 1;
        }
        assert_eq!(sent, 50);
    }

    #[test]
    fn a_stall_skips_slots_instead_of_bursting() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        let late = t0 + ms(1000);
        p.filled(late);
        // Timestamps stay tied to the wall clock: the slot index jumped with the time.
        assert!(p.slot() >= 49, "slot {}", p.slot());
        assert!(!p.needs_silence(late));
    }

    /// Late means the driver missed the silence deadline by more than it may: a driver that
    /// wakes for the silence on time is never late, one that comes back from a stall is.
    #[test]
    fn late_only_past_the_grace_and_the_allowance() {
        let t0 = Instant::now();
        let p = Pacer::new(t0);
        let silence_due = p.next_wakeup(false);
        assert!(p.needs_silence(silence_due));
        assert!(!p.late_by(silence_due, ms(5)), "on time");
        assert!(!p.late_by(silence_due + ms(4), ms(5)));
        assert!(p.late_by(silence_due + ms(5), ms(5)), "a stall");
    }
}
