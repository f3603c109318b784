//! EVI's speech on its way to the caller, sans-IO: `audio_output` chunks put in order by
//! segment id and index, decoded (base64 WAV, rate read from each header), converted to 8 kHz
//! with an anti-aliasing filter, and cut into 20 ms frames.
//!
//! Barge-in lives here too: the segments of an interrupted reply are remembered as dead, so
//! their late chunks are dropped instead of talking over the caller.

use std::collections::{BTreeMap, VecDeque};

use base64::Engine;

use crate::codec::resample::Resampler;
use crate::codec::wav;
use crate::media::frame::AudioFrame;

use super::protocol::AudioOutput;

/// The caller's rate: G.711.
pub const OUT_RATE: u32 = 8000;
/// Samples in one 20 ms frame at [`OUT_RATE`].
pub const FRAME: usize = 160;
/// Ids remembered as finished or interrupted. A reply has a handful of segments; this only
/// needs to outlast the chunks still in flight when a segment ends.
const DEAD_IDS: usize = 64;
/// Chunks held behind a missing index before the gap is skipped: over one ordered socket a gap
/// means EVI skipped an index, and waiting longer would only stall the reply.
const MAX_HELD: usize = 4;

/// What happened to the chunks so far (for logs and the end-of-call summary).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlayoutStats {
    pub chunks_played: u64,
    /// Chunks of interrupted or finished segments that arrived late.
    pub chunks_discarded: u64,
    /// Chunks that were not base64 16-bit mono WAV, or whose rate cannot be converted.
    pub chunks_undecodable: u64,
    pub frames: u64,
}

/// Why a chunk could not be played.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    #[error("audio_output {id}/{index}: not base64: {source}")]
    Base64 {
        id: String,
        index: u32,
        source: base64::DecodeError,
    },
    #[error("audio_output {id}/{index}: {source}")]
    Wav {
        id: String,
        index: u32,
        source: wav::WavError,
    },
    #[error("audio_output {id}/{index}: {source}")]
    Rate {
        id: String,
        index: u32,
        source: crate::codec::resample::ResampleError,
    },
}

/// A [`ChunkError`] before it is told which chunk it was about.
enum Fault {
    Base64(base64::DecodeError),
    Wav(wav::WavError),
    Rate(crate::codec::resample::ResampleError),
}

impl Fault {
    fn into_error(self, id: String, index: u32) -> ChunkError {
        match self {
            Fault::Base64(source) => ChunkError::Base64 { id, index, source },
            Fault::Wav(source) => ChunkError::Wav { id, index, source },
            Fault::Rate(source) => ChunkError::Rate { id, index, source },
        }
    }
}

struct Segment {
    id: String,
    next_index: u32,
    held: BTreeMap<u32, String>,
}

pub struct Playout {
    /// Segments in order of first arrival; the front one is playing.
    segments: VecDeque<Segment>,
    dead: VecDeque<String>,
    resampler: Option<Resampler>,
    wav_bytes: Vec<u8>,
    pcm_in: Vec<i16>,
    /// 8 kHz samples not yet making a whole frame.
    pcm_out: Vec<i16>,
    /// The filter holds the end of what was played (its delay) until pushed out with silence.
    tail_pending: bool,
    stats: PlayoutStats,
}

impl Default for Playout {
    fn default() -> Self {
        Self::new()
    }
}

impl Playout {
    pub fn new() -> Playout {
        Playout {
            segments: VecDeque::new(),
            dead: VecDeque::with_capacity(DEAD_IDS),
            resampler: None,
            wav_bytes: Vec::new(),
            pcm_in: Vec::new(),
            pcm_out: Vec::new(),
            tail_pending: false,
            stats: PlayoutStats::default(),
        }
    }

    pub fn stats(&self) -> PlayoutStats {
        self.stats
    }

    /// Whether chunks of `id` are being dropped (interrupted or already finished).
    pub fn is_dead(&self, id: &str) -> bool {
        self.dead.iter().any(|d| d == id)
    }

    /// Takes one chunk; every frame it completes goes to `emit`, in play order. Returns
    /// whether the chunk was accepted (false: it belongs to a dead segment or repeats an index).
    /// Errors name a chunk that could not be decoded; the stream carries on without it.
    pub fn push(
        &mut self,
        chunk: AudioOutput,
        emit: &mut dyn FnMut(AudioFrame),
        errors: &mut dyn FnMut(ChunkError),
    ) -> bool {
        if self.is_dead(&chunk.id) {
            self.stats.chunks_discarded += 1;
            return false;
        }
        let pos = match self.segments.iter().position(|s| s.id == chunk.id) {
            Some(p) => p,
            None => {
                self.segments.push_back(Segment {
                    id: chunk.id.clone(),
                    next_index: 0,
                    held: BTreeMap::new(),
                });
                self.segments.len() - 1
            }
        };
        let seg = &mut self.segments[pos];
        if chunk.index < seg.next_index || seg.held.contains_key(&chunk.index) {
            self.stats.chunks_discarded += 1;
            return false;
        }
        seg.held.insert(chunk.index, chunk.data);
        self.drain(false, emit, errors);
        true
    }

    /// The assistant's turn is over (`assistant_end`): play everything held, gaps skipped, and
    /// the last partial frame padded with silence.
    pub fn end_of_turn(
        &mut self,
        emit: &mut dyn FnMut(AudioFrame),
        errors: &mut dyn FnMut(ChunkError),
    ) {
        self.drain(true, emit, errors);
        while let Some(seg) = self.segments.pop_front() {
            self.bury(seg.id);
        }
        self.flush_tail(emit);
    }

    /// Barge-in: everything not yet emitted is dropped and every segment seen so far is dead.
    pub fn interrupt(&mut self) {
        while let Some(seg) = self.segments.pop_front() {
            self.stats.chunks_discarded += seg.held.len() as u64;
            self.bury(seg.id);
        }
        self.pcm_out.clear();
        self.tail_pending = false;
        if let Some(r) = self.resampler.as_mut() {
            r.reset();
        }
    }

    /// Drops the segment `id` for good: its beginning was not played (it came from a socket
    /// that was not live yet), so the rest would start mid-sentence.
    pub fn discard(&mut self, id: &str) {
        if !self.is_dead(id) {
            self.bury(id.to_string());
        }
    }

    fn bury(&mut self, id: String) {
        if self.dead.len() == DEAD_IDS {
            self.dead.pop_front();
        }
        self.dead.push_back(id);
    }

    /// Plays what is in order. `all`: skip gaps and play everything held.
    fn drain(
        &mut self,
        all: bool,
        emit: &mut dyn FnMut(AudioFrame),
        errors: &mut dyn FnMut(ChunkError),
    ) {
        loop {
            let newer = self.segments.len() > 1;
            let Some(seg) = self.segments.front_mut() else {
                return;
            };
            if let Some(data) = seg.held.remove(&seg.next_index) {
                let index = seg.next_index;
                seg.next_index += 1;
                if let Err(fault) = self.play(&data, emit) {
                    self.stats.chunks_undecodable += 1;
                    // The id is copied only for a chunk that failed, not for every one played.
                    let id = self
                        .segments
                        .front()
                        .map(|s| s.id.clone())
                        .unwrap_or_default();
                    errors(fault.into_error(id, index));
                }
                continue;
            }
            if let Some((&first, _)) = seg.held.first_key_value() {
                // A gap: wait for the missing chunk unless it is clearly not coming.
                if all || newer || seg.held.len() > MAX_HELD {
                    seg.next_index = first;
                    continue;
                }
                return;
            }
            // Nothing held: a newer segment means this one is complete.
            if newer {
                if let Some(done) = self.segments.pop_front() {
                    self.bury(done.id);
                }
                continue;
            }
            return;
        }
    }

    fn play(&mut self, data: &str, emit: &mut dyn FnMut(AudioFrame)) -> Result<(), Fault> {
        self.wav_bytes.clear();
        base64::engine::general_purpose::STANDARD
            .decode_vec(data, &mut self.wav_bytes)
            .map_err(Fault::Base64)?;
        let wav = wav::read_pcm16(&self.wav_bytes).map_err(Fault::Wav)?;
        if self.resampler.as_ref().map(Resampler::input_rate) != Some(wav.rate) {
            // A new rate starts a new filter: mixing histories of two rates would click.
            self.resampler = Some(Resampler::new(wav.rate, OUT_RATE).map_err(Fault::Rate)?);
        }
        self.pcm_in.clear();
        wav.decode_into(&mut self.pcm_in);
        if let Some(r) = self.resampler.as_mut() {
            r.process(&self.pcm_in, &mut self.pcm_out);
        }
        self.tail_pending = true;
        self.stats.chunks_played += 1;
        self.cut_frames(emit);
        Ok(())
    }

    fn cut_frames(&mut self, emit: &mut dyn FnMut(AudioFrame)) {
        let whole = self.pcm_out.len() / FRAME * FRAME;
        for f in self.pcm_out[..whole].chunks_exact(FRAME) {
            emit(AudioFrame::from_samples(OUT_RATE, f));
            self.stats.frames += 1;
        }
        self.pcm_out.drain(..whole);
    }

    /// Pushes the filter's delay line out with silence and pads the last frame.
    fn flush_tail(&mut self, emit: &mut dyn FnMut(AudioFrame)) {
        if let Some(r) = self.resampler.as_mut().filter(|_| self.tail_pending) {
            let n = (r.delay_secs() * f64::from(r.input_rate())).ceil() as usize;
            if n > 0 {
                self.pcm_in.clear();
                self.pcm_in.resize(n, 0);
                r.process(&self.pcm_in, &mut self.pcm_out);
            }
            r.reset();
        }
        self.tail_pending = false;
        let padded = self.pcm_out.len().div_ceil(FRAME) * FRAME;
        self.pcm_out.resize(padded, 0);
        self.cut_frames(emit);
    }
}

#[cfg(test)]
#[path = "playout_tests.rs"]
mod tests;
