//! A far end's G.711 audio, which comes in pieces of any length (Media Streams bots, OpenAI's
//! deltas), cut into the call's 20 ms frames and handed down in play order with the far end's
//! marks in their place. A piece that does not fill a frame waits for the next one and is
//! padded with silence only when the call would otherwise run dry, so a reply split at odd
//! byte counts plays without gaps.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::remote::Down;
use super::ws::session::Output;
use super::AudioFrame;
use crate::codec::g711::{self, Law};

/// One frame: 20 ms of G.711 at 8 kHz.
pub const FRAME_BYTES: usize = 160;
const FRAME: Duration = Duration::from_millis(20);
/// Marks waiting for a partial frame to complete; beyond this a far end is flooding and marks
/// are passed on at once.
const MAX_PENDING_MARKS: usize = 1000;

pub struct Reframer {
    law: Law,
    /// Audio that does not make a whole frame yet, and the marks placed after it.
    partial: Vec<u8>,
    marks_after_partial: Vec<String>,
    /// When the call will have played every frame handed down (an estimate on the 20 ms
    /// clock): a partial frame is padded and sent no earlier.
    dry_at: Instant,
    audio_at: Instant,
    frames: u64,
}

impl Reframer {
    pub fn new(law: Law, now: Instant) -> Reframer {
        Reframer {
            law,
            partial: Vec::with_capacity(FRAME_BYTES),
            marks_after_partial: Vec::new(),
            dry_at: now,
            audio_at: now,
            frames: 0,
        }
    }

    /// Frames handed down so far (padding included).
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Bytes handed down or waiting, counted in whole frames once padded: the byte at this
    /// position plays in frame `position / 160`.
    pub fn position(&self) -> u64 {
        self.frames * FRAME_BYTES as u64 + self.partial.len() as u64
    }

    /// Whether frames handed down are still playing (by the 20 ms clock's estimate).
    pub fn playing(&self, now: Instant) -> bool {
        now < self.dry_at
    }

    /// `bytes` of the far end's audio, in order.
    pub fn push(&mut self, now: Instant, mut bytes: &[u8], out: &mut VecDeque<Output>) {
        self.audio_at = now;
        if !self.partial.is_empty() {
            let take = (FRAME_BYTES - self.partial.len()).min(bytes.len());
            self.partial.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.partial.len() == FRAME_BYTES {
                self.send_partial(now, out);
            }
        }
        let mut frames = bytes.chunks_exact(FRAME_BYTES);
        for frame in frames.by_ref() {
            self.frame_down(now, frame, out);
        }
        self.partial.extend_from_slice(frames.remainder());
    }

    /// A far end's mark, after the audio pushed so far.
    pub fn mark(&mut self, name: String, out: &mut VecDeque<Output>) {
        if self.partial.is_empty() || self.marks_after_partial.len() >= MAX_PENDING_MARKS {
            out.push_back(Output::Down(Down::Mark(name)));
        } else {
            self.marks_after_partial.push(name);
        }
    }

    /// Barge-in: the partial frame is dropped, the call told to drop its queue, and the marks
    /// that waited are passed on after the clear (so they are reported at once).
    pub fn clear(&mut self, now: Instant, out: &mut VecDeque<Output>) {
        self.partial.clear();
        self.dry_at = now;
        out.push_back(Output::Down(Down::Clear));
        self.release_marks(out);
    }

    /// When a partial frame is due to be padded and sent.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.partial.is_empty()).then(|| self.dry_at.max(self.audio_at + FRAME))
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut VecDeque<Output>) {
        if self.poll_timeout().is_some_and(|at| now >= at) {
            self.send_partial(now, out);
        }
    }

    /// Sends the partial frame (padded with silence when short), then the marks placed after
    /// it.
    fn send_partial(&mut self, now: Instant, out: &mut VecDeque<Output>) {
        let mut frame = [self.law.silence(); FRAME_BYTES];
        frame[..self.partial.len()].copy_from_slice(&self.partial);
        self.partial.clear();
        self.frame_down(now, &frame, out);
        self.release_marks(out);
    }

    fn release_marks(&mut self, out: &mut VecDeque<Output>) {
        for name in self.marks_after_partial.drain(..) {
            out.push_back(Output::Down(Down::Mark(name)));
        }
    }

    fn frame_down(&mut self, now: Instant, g711: &[u8], out: &mut VecDeque<Output>) {
        let mut frame = AudioFrame::silence(8000);
        g711::decode(self.law, g711, frame.samples_mut());
        out.push_back(Output::Down(Down::Frame(frame)));
        self.frames += 1;
        self.dry_at = self.dry_at.max(now) + FRAME;
    }
}
