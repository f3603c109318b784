//! The audio between the phone (8 kHz) and the room (Opus).
//!
//! libopus encodes from and decodes to 8 kHz PCM itself (the stream on the wire is 48 kHz Opus
//! either way), so there is no resampler here: measured, running the codecs at 8 kHz costs a
//! fraction of resampling around 48 kHz codecs (docs/performance.md, "LiveKit leg").
//!
//! Up: each 20 ms caller frame is one Opus packet. Down: every subscribed track's packets are
//! decoded into a short per-track buffer; once per 20 ms the buffers are mixed into one frame
//! for the caller. Buffers are bounded so that a sender whose clock runs fast cannot build up
//! latency.

use std::collections::VecDeque;

use crate::codec::opus::{self, EncoderSettings, OpusDecoder, OpusEncoder, OpusError, MAX_PACKET};
use crate::media::frame::AudioFrame;

const PHONE_RATE: u32 = 8_000;
const PHONE_FRAME: usize = opus::frame_len(PHONE_RATE);
/// Longest Opus packet (120 ms) in samples at 8 kHz.
const MAX_DECODED: usize = PHONE_FRAME * 6;
/// Audio held per track beyond this is dropped, oldest first: 60 ms keeps the mix in step with
/// the room while absorbing ordinary network jitter.
const MAX_TRACK_BUFFER: usize = PHONE_FRAME * 3;

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct MediaError(#[from] OpusError);

/// Caller audio to Opus packets.
pub struct Uplink {
    encoder: OpusEncoder,
    packet: [u8; MAX_PACKET],
}

impl Uplink {
    pub fn new(settings: EncoderSettings) -> Result<Uplink, MediaError> {
        Ok(Uplink {
            encoder: OpusEncoder::new(PHONE_RATE, settings)?,
            packet: [0; MAX_PACKET],
        })
    }

    /// One 8 kHz frame in, its Opus packet out.
    pub fn push(&mut self, frame: &AudioFrame) -> Result<Option<&[u8]>, MediaError> {
        let pcm = frame.samples();
        if frame.sample_rate() != PHONE_RATE || pcm.len() != PHONE_FRAME {
            // The call only ever sends 20 ms at 8 kHz; anything else is not ours to encode.
            return Ok(None);
        }
        let n = self.encoder.encode(pcm, &mut self.packet)?;
        Ok(Some(&self.packet[..n]))
    }
}

struct Track {
    key: u64,
    decoder: OpusDecoder,
    buffer: VecDeque<i16>,
}

/// Room tracks to 8 kHz frames for the caller.
pub struct Downlink {
    tracks: Vec<Track>,
    decoded: [i16; MAX_DECODED],
    mix: [i32; PHONE_FRAME],
    /// Packets that did not decode (counted, not fatal: one bad packet is one lost frame).
    pub decode_errors: u64,
}

impl Default for Downlink {
    fn default() -> Self {
        Downlink::new()
    }
}

impl Downlink {
    /// No decoder exists until a track's first packet, so making one cannot fail.
    pub fn new() -> Downlink {
        Downlink {
            tracks: Vec::new(),
            decoded: [0; MAX_DECODED],
            mix: [0; PHONE_FRAME],
            decode_errors: 0,
        }
    }

    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }

    /// An Opus packet of the track `key` arrived.
    pub fn on_packet(&mut self, key: u64, payload: &[u8]) -> Result<(), MediaError> {
        let i = match self.tracks.iter().position(|t| t.key == key) {
            Some(i) => i,
            None => {
                self.tracks.push(Track {
                    key,
                    decoder: OpusDecoder::new(PHONE_RATE)?,
                    buffer: VecDeque::with_capacity(MAX_TRACK_BUFFER + MAX_DECODED),
                });
                self.tracks.len() - 1
            }
        };
        let track = &mut self.tracks[i];
        match track.decoder.decode(payload, &mut self.decoded) {
            Ok(n) => {
                track.buffer.extend(&self.decoded[..n]);
                let excess = track.buffer.len().saturating_sub(MAX_TRACK_BUFFER);
                track.buffer.drain(..excess);
            }
            Err(_) => self.decode_errors += 1,
        }
        Ok(())
    }

    /// Whether a track holds a whole frame, so [`Downlink::tick`] has something to mix.
    pub fn ready(&self) -> bool {
        self.tracks.iter().any(|t| t.buffer.len() >= PHONE_FRAME)
    }

    /// The track ended (unsubscribed, or its participant left).
    pub fn remove_track(&mut self, key: u64) {
        self.tracks.retain(|t| t.key != key);
    }

    /// Called every 20 ms: mixes a frame from every track that has one and returns it, or
    /// `None` when no track had audio (the call fills silence).
    pub fn tick(&mut self) -> Option<AudioFrame> {
        let mut any = false;
        self.mix.fill(0);
        for t in &mut self.tracks {
            if t.buffer.len() < PHONE_FRAME {
                continue;
            }
            any = true;
            for (m, s) in self.mix.iter_mut().zip(t.buffer.drain(..PHONE_FRAME)) {
                *m += i32::from(s);
            }
        }
        if !any {
            return None;
        }
        let mut frame = AudioFrame::silence(PHONE_RATE);
        for (o, &m) in frame.samples_mut().iter_mut().zip(self.mix.iter()) {
            *o = m.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
        }
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::opus::{OpusDecoder, FRAME, RATE};
    use crate::load::signal::{rms, zero_crossing_hz};

    fn tone(freq: f64, rate: u32, n: usize, from: usize, amp: f64) -> Vec<i16> {
        (from..from + n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64).sin()) as i16
            })
            .collect()
    }

    fn packets(freq: f64, amp: f64, n: usize) -> Vec<Vec<u8>> {
        let mut enc = OpusEncoder::new(RATE, EncoderSettings::default()).unwrap();
        let mut out = [0u8; MAX_PACKET];
        (0..n)
            .map(|k| {
                let pcm = tone(freq, RATE, FRAME, k * FRAME, amp);
                let len = enc.encode(&pcm, &mut out).unwrap();
                out[..len].to_vec()
            })
            .collect()
    }

    #[test]
    fn uplink_turns_each_phone_frame_into_one_opus_packet_at_the_same_pitch() {
        assert!(Uplink::new(EncoderSettings::default())
            .unwrap()
            .push(&AudioFrame::silence(16_000))
            .unwrap()
            .is_none());
        let mut up = Uplink::new(EncoderSettings::default()).unwrap();
        // The room decodes at 48 kHz.
        let mut dec = OpusDecoder::new(RATE).unwrap();
        let mut pcm48 = Vec::new();
        let mut buf = [0i16; FRAME];
        for k in 0..50 {
            let f = AudioFrame::from_samples(8000, &tone(1000.0, 8000, 160, k * 160, 8000.0));
            let pkt = up.push(&f).unwrap().expect("one packet per frame").to_vec();
            let n = dec.decode(&pkt, &mut buf).unwrap();
            pcm48.extend_from_slice(&buf[..n]);
        }
        let f = zero_crossing_hz(&pcm48[FRAME * 10..], f64::from(RATE));
        assert!((f - 1000.0).abs() < 15.0, "{f} Hz");
    }

    #[test]
    fn downlink_mixes_tracks_at_the_phone_rate() {
        let mut down = Downlink::new();
        let a = packets(440.0, 6000.0, 50);
        let mut out = Vec::new();
        for p in &a {
            down.on_packet(1, p).unwrap();
            if let Some(f) = down.tick() {
                assert_eq!((f.sample_rate(), f.samples().len()), (8000, 160));
                out.extend_from_slice(f.samples());
            }
        }
        assert!(out.len() >= 160 * 48, "{}", out.len());
        let f = zero_crossing_hz(&out[160 * 5..], 8000.0);
        assert!((f - 440.0).abs() < 10.0, "{f} Hz");
        // Two tracks: both are heard (a mix is louder than either alone), one frame per tick.
        let b = packets(440.0, 6000.0, 20);
        let single = rms(&out[160 * 10..]);
        let mut both = Vec::new();
        for (pa, pb) in a.iter().zip(&b) {
            down.on_packet(1, pa).unwrap();
            down.on_packet(2, pb).unwrap();
            both.extend_from_slice(down.tick().expect("a frame").samples());
        }
        assert_eq!(down.track_count(), 2);
        assert!(rms(&both[160 * 10..]) > single * 1.5);
        down.remove_track(2);
        assert_eq!(down.track_count(), 1);
    }

    #[test]
    fn downlink_bounds_each_track_and_survives_garbage() {
        let mut down = Downlink::new();
        for p in packets(440.0, 6000.0, 20) {
            down.on_packet(7, &p).unwrap();
        }
        // 20 frames arrived without a tick: only the newest three are kept.
        let frames = std::iter::from_fn(|| down.tick()).count();
        assert!(frames <= 3, "{frames}");
        down.on_packet(7, &[0xFF, 0xFF]).unwrap();
        down.on_packet(7, &[]).unwrap();
        assert_eq!(down.decode_errors, 2);
        assert!(down.tick().is_none());
    }
}
