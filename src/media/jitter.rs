//! Reorder buffer with a deadline for the caller's inbound RTP.
//!
//! The agent wants caller audio as early as possible and in order, so this is not a fixed-delay
//! playout buffer: an in-order packet is released at once. Only when a sequence gap appears are
//! the packets after it held, until the missing one arrives, or the oldest held packet has waited
//! `max_wait`, or more than `max_wait / 20 ms` packets are held. Then the missing frames are
//! reported as [`Playout::Lost`] and the held ones released in order. Each sequence number is
//! therefore released exactly once, as a frame or as a loss, and no packet waits longer than
//! `max_wait`.
//!
//! Payloads are copied into slots allocated at construction; `push` and `pop` never allocate.
//! Sequence numbers are mapped to a private 64-bit extended space so that wrap-around and
//! resynchronisation (a new SSRC, or a jump of more than [`MAX_JUMP`] frames) are plain integer
//! comparisons; a resync releases what the old stream still holds before the new stream starts.

use std::time::{Duration, Instant};

use super::rtp::{seq_diff, RtpHeader};

/// A forward jump of more than this many frames past the next expected one restarts the stream
/// instead of reporting every skipped number as lost.
pub const MAX_JUMP: u64 = 100;
/// A packet more than this many frames behind is a restart candidate, not merely late.
const MAX_MISORDER: u64 = 100;
/// Frame duration assumed when converting `max_wait` into a count of held frames (Twilio and
/// nearly every SIP trunk send 20 ms G.711).
const ASSUMED_PTIME: Duration = Duration::from_millis(20);
/// Where extended sequence numbers start, far enough from zero that stepping back one half of
/// the 16-bit space cannot underflow.
const EXT_ORIGIN: u64 = 1 << 32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JitterConfig {
    /// Longest a packet may be held waiting for a missing predecessor.
    pub max_wait: Duration,
    /// Largest payload stored; longer payloads are dropped and count as `oversized`.
    pub max_payload: usize,
    /// Number of payload slots (at least 2 are used).
    pub slots: usize,
}

impl Default for JitterConfig {
    fn default() -> Self {
        // 320 bytes covers 40 ms of G.711, twice the usual packet.
        JitterConfig {
            max_wait: Duration::from_millis(60),
            max_payload: 320,
            slots: 8,
        }
    }
}

/// One item of in-order output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Playout<'a> {
    Frame {
        sequence: u16,
        timestamp: u32,
        payload: &'a [u8],
    },
    Lost {
        sequence: u16,
    },
}

/// Counters since construction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Frames released.
    pub released: u64,
    /// `Lost` items released (includes oversized packets, which are released as losses).
    pub lost: u64,
    /// Packets dropped because the same sequence number was already held or released.
    pub duplicates: u64,
    /// Packets dropped because their sequence number was already released or reported lost.
    pub late: u64,
    /// Times the stream was restarted (SSRC change or sequence jump).
    pub resyncs: u64,
    /// Packets whose payload exceeded `max_payload`.
    pub oversized: u64,
    /// Packets dropped because every slot was in use (only when `pop` is not called after each
    /// `push`); they are later released as losses.
    pub overflow: u64,
    /// Held packets of an old stream dropped because a second resync came before they were
    /// popped.
    pub discarded: u64,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    ext: u64,
    sequence: u16,
    timestamp: u32,
    /// `None` marks a packet known to be unusable (oversized): released as `Lost` without waiting.
    len: Option<usize>,
    arrival: Instant,
}

#[derive(Clone, Copy, Debug)]
struct Stream {
    ssrc: u32,
    /// The SSRC before the last change; its stragglers are dropped rather than flipping back.
    prev_ssrc: Option<u32>,
    /// Extended sequence number released next.
    next: u64,
    /// Highest extended number of the current epoch and its 16-bit sequence.
    anchor_ext: u64,
    anchor_seq: u16,
    /// First extended number of the current epoch; below it lie the previous epoch's numbers,
    /// still being drained while `next < epoch_base`.
    epoch_base: u64,
    prev_anchor_ext: u64,
    prev_anchor_seq: u16,
    /// Bit i set: extended number `next - 1 - i` was released as a frame (duplicate detection).
    released_frames: u64,
    /// SSRC and sequence expected after a far-behind packet or a packet of `prev_ssrc`; seeing
    /// it next confirms the sender restarted (or returned to that SSRC).
    restart_candidate: Option<(u32, u16)>,
}

impl Stream {
    fn start(ssrc: u32, seq: u16, base: u64) -> Self {
        Stream {
            ssrc,
            prev_ssrc: None,
            next: base,
            anchor_ext: base,
            anchor_seq: seq,
            epoch_base: base,
            prev_anchor_ext: base,
            prev_anchor_seq: seq,
            released_frames: 0,
            restart_candidate: None,
        }
    }

    fn ext_of(&self, seq: u16) -> u64 {
        self.anchor_ext
            .wrapping_add_signed(i64::from(seq_diff(seq, self.anchor_seq)))
    }

    fn seq_of(&self, ext: u64) -> u16 {
        let (anchor_ext, anchor_seq) = if ext >= self.epoch_base {
            (self.anchor_ext, self.anchor_seq)
        } else {
            (self.prev_anchor_ext, self.prev_anchor_seq)
        };
        // Truncation is the modular arithmetic of the 16-bit space.
        anchor_seq.wrapping_add(ext.wrapping_sub(anchor_ext) as u16)
    }

    fn advance(&mut self, released_frame: bool) {
        self.next += 1;
        self.released_frames = (self.released_frames << 1) | u64::from(released_frame);
    }
}

pub struct JitterBuffer {
    max_wait: Duration,
    max_payload: usize,
    max_held: usize,
    slots: Vec<Option<Slot>>,
    data: Box<[u8]>,
    held: usize,
    stream: Option<Stream>,
    stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(cfg: JitterConfig) -> Self {
        let slots = cfg.slots.max(2);
        let frames = (cfg.max_wait.as_nanos() / ASSUMED_PTIME.as_nanos()) as usize;
        JitterBuffer {
            max_wait: cfg.max_wait,
            max_payload: cfg.max_payload,
            // Leave a slot free so a pop-after-every-push driver never overflows.
            max_held: frames.clamp(1, slots - 1),
            slots: vec![None; slots],
            data: vec![0; slots * cfg.max_payload].into_boxed_slice(),
            held: 0,
            stream: None,
            stats: JitterStats::default(),
        }
    }

    /// Accepts one received packet. Duplicates, late and unusable packets are counted and dropped.
    pub fn push(&mut self, now: Instant, header: &RtpHeader, payload: &[u8]) {
        if let Some(ext) = self.place(header) {
            self.store(ext, now, header, payload);
        }
    }

    /// Decides the extended number a packet takes, or `None` (counted) if it is dropped.
    fn place(&mut self, header: &RtpHeader) -> Option<u64> {
        let Some(mut stream) = self.stream else {
            self.stream = Some(Stream::start(header.ssrc, header.sequence, EXT_ORIGIN));
            return Some(EXT_ORIGIN);
        };
        let candidate = Some((header.ssrc, header.sequence));
        let next_candidate = Some((header.ssrc, header.sequence.wrapping_add(1)));

        if header.ssrc != stream.ssrc {
            // A straggler of the SSRC just replaced must not flip the stream back; two
            // consecutive packets from it mean the sender really returned to it.
            if stream.prev_ssrc == Some(header.ssrc) && stream.restart_candidate != candidate {
                stream.restart_candidate = next_candidate;
                self.stream = Some(stream);
                self.stats.late += 1;
                return None;
            }
            return Some(self.resync(header));
        }

        let ext = stream.ext_of(header.sequence);
        let floor = stream.next.max(stream.epoch_base);
        if ext < floor {
            if floor - ext > MAX_MISORDER {
                // Far behind: a stray, or the sender restarted its numbering. Two consecutive
                // packets tell them apart (RFC 3550 A.1's bad_seq).
                if stream.restart_candidate == candidate {
                    return Some(self.resync(header));
                }
                stream.restart_candidate = next_candidate;
                self.stream = Some(stream);
                self.stats.late += 1;
                return None;
            }
            let behind = stream.next.wrapping_sub(ext).wrapping_sub(1);
            let was_frame = ext < stream.next
                && ext >= stream.epoch_base
                && behind < 64
                && stream.released_frames & (1 << behind) != 0;
            if was_frame {
                self.stats.duplicates += 1;
            } else {
                self.stats.late += 1;
            }
            return None;
        }

        if ext - floor > MAX_JUMP {
            return Some(self.resync(header));
        }
        stream.restart_candidate = None;
        if ext > stream.anchor_ext {
            stream.anchor_ext = ext;
            stream.anchor_seq = header.sequence;
        }
        self.stream = Some(stream);
        if self.find(ext).is_some() {
            self.stats.duplicates += 1;
            return None;
        }
        Some(ext)
    }

    /// Starts a new epoch for `header` and returns the extended number its packet takes.
    fn resync(&mut self, header: &RtpHeader) -> u64 {
        self.stats.resyncs += 1;
        let Some(mut stream) = self.stream else {
            return EXT_ORIGIN;
        };
        if stream.next < stream.epoch_base {
            // Still draining an earlier epoch: give it up rather than track three.
            for slot in &mut self.slots {
                if slot.is_some_and(|s| s.ext < stream.epoch_base) {
                    *slot = None;
                    self.held -= 1;
                    self.stats.discarded += 1;
                }
            }
            stream.next = stream.epoch_base;
        }
        // The new epoch starts right after whatever is still held, so the old stream's
        // remaining frames and gaps are released first, without waiting for its deadline.
        let base = self
            .slots
            .iter()
            .flatten()
            .map(|s| s.ext + 1)
            .max()
            .unwrap_or(stream.next);
        stream.prev_anchor_ext = stream.anchor_ext;
        stream.prev_anchor_seq = stream.anchor_seq;
        stream.anchor_ext = base;
        stream.anchor_seq = header.sequence;
        stream.epoch_base = base;
        stream.restart_candidate = None;
        if header.ssrc != stream.ssrc {
            stream.prev_ssrc = Some(stream.ssrc);
            stream.ssrc = header.ssrc;
        }
        self.stream = Some(stream);
        base
    }

    fn store(&mut self, ext: u64, now: Instant, header: &RtpHeader, payload: &[u8]) {
        let Some(index) = self.slots.iter().position(Option::is_none) else {
            self.stats.overflow += 1;
            return;
        };
        let len = if payload.len() > self.max_payload {
            self.stats.oversized += 1;
            None
        } else {
            let start = index * self.max_payload;
            self.data[start..start + payload.len()].copy_from_slice(payload);
            Some(payload.len())
        };
        self.slots[index] = Some(Slot {
            ext,
            sequence: header.sequence,
            timestamp: header.timestamp,
            len,
            arrival: now,
        });
        self.held += 1;
    }

    fn find(&self, ext: u64) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.is_some_and(|s| s.ext == ext))
    }

    fn oldest_arrival(&self) -> Option<Instant> {
        self.slots.iter().flatten().map(|s| s.arrival).min()
    }

    /// Whether the gap at the next number must be given up now regardless of the clock.
    fn must_skip_gap(&self, stream: &Stream) -> bool {
        stream.next < stream.epoch_base || self.held > self.max_held
    }

    /// Next playout item if one is due at `now`, in sequence order; call repeatedly until `None`.
    pub fn pop(&mut self, now: Instant) -> Option<Playout<'_>> {
        let mut stream = self.stream?;
        let mut found = None;
        let mut oldest: Option<Instant> = None;
        for (index, entry) in self.slots.iter_mut().enumerate() {
            let Some(slot) = entry else { continue };
            if slot.ext == stream.next {
                found = Some(index);
                break;
            }
            if slot.ext < stream.next {
                // Cannot happen (packets are only stored at or after `next`), but a slot left
                // behind would make every later pop report a loss forever, so shed it.
                *entry = None;
                self.held -= 1;
                self.stats.discarded += 1;
                continue;
            }
            oldest = Some(oldest.map_or(slot.arrival, |t| t.min(slot.arrival)));
        }

        if let Some(index) = found {
            let slot = self.slots[index].take()?;
            self.held -= 1;
            stream.advance(slot.len.is_some());
            self.stream = Some(stream);
            return Some(match slot.len {
                Some(len) => {
                    self.stats.released += 1;
                    let start = index * self.max_payload;
                    Playout::Frame {
                        sequence: slot.sequence,
                        timestamp: slot.timestamp,
                        payload: &self.data[start..start + len],
                    }
                }
                None => {
                    self.stats.lost += 1;
                    Playout::Lost {
                        sequence: slot.sequence,
                    }
                }
            });
        }

        // A gap at `next` with packets held behind it.
        let oldest = oldest?;
        let deadline_passed = now.saturating_duration_since(oldest) >= self.max_wait;
        if !(deadline_passed || self.must_skip_gap(&stream)) {
            return None;
        }
        let sequence = stream.seq_of(stream.next);
        stream.advance(false);
        self.stream = Some(stream);
        self.stats.lost += 1;
        Some(Playout::Lost { sequence })
    }

    /// When `pop` must be called again even if no packet arrives; an instant in the past means
    /// an item is due already. `None` when nothing is held.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let stream = self.stream.as_ref()?;
        let oldest = self.oldest_arrival()?;
        if self.find(stream.next).is_some() || self.must_skip_gap(stream) {
            Some(oldest)
        } else {
            Some(oldest + self.max_wait)
        }
    }

    /// Packets currently held (waiting for a gap to fill, or not yet popped).
    pub fn held(&self) -> usize {
        self.held
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }
}
