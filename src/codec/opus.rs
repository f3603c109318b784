//! Opus for the LiveKit leg: 20 ms mono frames, through the system libopus (`audiopus`).
//!
//! An Opus stream is always 48 kHz on the wire (RTP clock, SDP `opus/48000/2`), but libopus
//! encodes from and decodes to any of 8, 12, 16, 24 or 48 kHz PCM, converting inside the codec.
//! The phone side is 8 kHz, so the LiveKit leg runs both codecs at 8 kHz: no resampling of its
//! own, and an encoder that only ever sees narrowband speech (docs/performance.md has the
//! figures that decided this).

use std::convert::TryFrom;

use audiopus::coder::{Decoder, Encoder};
use audiopus::packet::Packet;
use audiopus::{Application, Bandwidth, Bitrate, Channels, MutSignals, SampleRate, Signal};

/// The stream's rate, and the largest PCM rate.
pub const RATE: u32 = 48_000;
/// Samples in one 20 ms mono frame at 48 kHz.
pub const FRAME: usize = frame_len(RATE);
/// Largest packet we produce or accept; 20 ms at Opus's top bitrate fits in 1275 bytes.
pub const MAX_PACKET: usize = 1500;
/// CELT holds a narrowband voice at 17 dB waveform SNR at 24 kb/s and 20 dB at 32 kb/s
/// (measured with the voice of `benches/opus_pipeline.rs`); the bitrate barely moves its CPU.
const BITRATE: i32 = 32_000;

#[derive(Debug, thiserror::Error)]
pub enum OpusError {
    #[error("opus: {0}")]
    Codec(#[from] audiopus::Error),
    #[error("opus: frame of {got} samples; 20 ms is {want}")]
    FrameSize { got: usize, want: usize },
    #[error("opus: {0} Hz is not an Opus PCM rate (8, 12, 16, 24 or 48 kHz)")]
    Rate(u32),
}

/// Which of Opus's two codecs encodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// CELT only (libopus's restricted low-delay application): a transform codec, 2.5 ms
    /// look-ahead, no in-band FEC.
    Celt,
    /// SILK for speech (the VoIP application), with in-band FEC: 6.5 ms look-ahead.
    Silk,
}

/// How the encoder works. On a narrowband source CELT costs a third of SILK at the same
/// bitrate, and higher complexity buys little (docs/performance.md has the figures).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncoderSettings {
    pub mode: Mode,
    pub complexity: u8,
    pub max_bandwidth: Bandwidth,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        // Telephone audio holds nothing above 4 kHz, so narrowband loses nothing.
        EncoderSettings {
            mode: Mode::Celt,
            complexity: 0,
            max_bandwidth: Bandwidth::Narrowband,
        }
    }
}

fn sample_rate(hz: u32) -> Result<SampleRate, OpusError> {
    i32::try_from(hz)
        .ok()
        .and_then(|r| SampleRate::try_from(r).ok())
        .ok_or(OpusError::Rate(hz))
}

/// Samples in 20 ms at `hz`.
pub const fn frame_len(hz: u32) -> usize {
    hz as usize / 50
}

pub struct OpusEncoder {
    enc: Encoder,
    frame: usize,
}

impl OpusEncoder {
    /// An encoder of `rate` Hz PCM, mono, DTX off (the agent's voice detection expects a
    /// continuous stream). SILK gets in-band FEC, which CELT does not have.
    pub fn new(rate: u32, settings: EncoderSettings) -> Result<OpusEncoder, OpusError> {
        let application = match settings.mode {
            Mode::Celt => Application::LowDelay,
            Mode::Silk => Application::Voip,
        };
        let mut enc = Encoder::new(sample_rate(rate)?, Channels::Mono, application)?;
        enc.set_bitrate(Bitrate::BitsPerSecond(BITRATE))?;
        enc.set_complexity(settings.complexity)?;
        enc.set_max_bandwidth(settings.max_bandwidth)?;
        enc.set_signal(Signal::Voice)?;
        if settings.mode == Mode::Silk {
            enc.set_inband_fec(true)?;
            enc.set_packet_loss_perc(5)?;
        }
        enc.set_dtx(false)?;
        Ok(OpusEncoder {
            enc,
            frame: frame_len(rate),
        })
    }

    /// Encodes one 20 ms frame into `out`; returns the packet length.
    pub fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, OpusError> {
        if pcm.len() != self.frame {
            return Err(OpusError::FrameSize {
                got: pcm.len(),
                want: self.frame,
            });
        }
        Ok(self.enc.encode(pcm, out)?)
    }
}

pub struct OpusDecoder {
    dec: Decoder,
}

impl OpusDecoder {
    /// A decoder to `rate` Hz PCM.
    pub fn new(rate: u32) -> Result<OpusDecoder, OpusError> {
        Ok(OpusDecoder {
            dec: Decoder::new(sample_rate(rate)?, Channels::Mono)?,
        })
    }

    /// Decodes one packet into `out` (at least 20 ms of samples at the decoder's rate; packets
    /// of up to 120 ms need six times that). Returns the samples written. A malformed packet is
    /// an error, never a panic.
    pub fn decode(&mut self, packet: &[u8], out: &mut [i16]) -> Result<usize, OpusError> {
        let packet = Packet::try_from(packet)?;
        let signals = MutSignals::try_from(out)?;
        Ok(self.dec.decode(Some(packet), signals, false)?)
    }

    /// Conceals one lost frame of `out.len()` samples.
    pub fn conceal(&mut self, out: &mut [i16]) -> Result<usize, OpusError> {
        let signals = MutSignals::try_from(out)?;
        Ok(self.dec.decode(None, signals, false)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::signal::{rms, zero_crossing_hz};

    fn tone(freq: f64, n: usize, offset: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = (i + offset) as f64 / RATE as f64;
                (8000.0 * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn round_trip_keeps_a_tone() {
        let mut enc = OpusEncoder::new(RATE, EncoderSettings::default()).unwrap();
        let mut dec = OpusDecoder::new(RATE).unwrap();
        let mut packet = [0u8; MAX_PACKET];
        let mut pcm = vec![0i16; FRAME];
        let mut decoded = Vec::new();
        let input = tone(440.0, FRAME * 50, 0);
        for frame in input.chunks(FRAME) {
            let n = enc.encode(frame, &mut packet).unwrap();
            assert!(n > 0 && n < 200, "32 kb/s is 80 bytes a frame, got {n}");
            let m = dec.decode(&packet[..n], &mut pcm).unwrap();
            assert_eq!(m, FRAME);
            decoded.extend_from_slice(&pcm);
        }
        // A perceptual codec keeps pitch and loudness, not the waveform: compare those.
        let tail = &decoded[FRAME * 10..];
        let ratio = rms(tail) / rms(&input[FRAME * 10..]);
        assert!((0.7..1.4).contains(&ratio), "level ratio {ratio:.2}");
        let freq = zero_crossing_hz(tail, f64::from(RATE));
        assert!((freq - 440.0).abs() < 5.0, "{freq} Hz");
    }

    #[test]
    fn a_stream_encoded_from_8_khz_plays_at_48_khz_and_back() {
        // What the room gets from us, and what we make of the room's 48 kHz stream.
        let mut enc8 = OpusEncoder::new(8000, EncoderSettings::default()).unwrap();
        let mut dec48 = OpusDecoder::new(RATE).unwrap();
        let mut enc48 = OpusEncoder::new(RATE, EncoderSettings::default()).unwrap();
        let mut dec8 = OpusDecoder::new(8000).unwrap();
        let mut packet = [0u8; MAX_PACKET];
        let (mut at48, mut at8) = (Vec::new(), Vec::new());
        let mut buf = vec![0i16; FRAME];
        for k in 0..50 {
            let pcm8: Vec<i16> = (0..160)
                .map(|i| {
                    let t = (k * 160 + i) as f64 / 8000.0;
                    (8000.0 * (2.0 * std::f64::consts::PI * 700.0 * t).sin()) as i16
                })
                .collect();
            let n = enc8.encode(&pcm8, &mut packet).unwrap();
            let m = dec48.decode(&packet[..n], &mut buf).unwrap();
            at48.extend_from_slice(&buf[..m]);
            let n = enc48
                .encode(&tone(440.0, FRAME, k * FRAME), &mut packet)
                .unwrap();
            let m = dec8.decode(&packet[..n], &mut buf).unwrap();
            assert_eq!(m, 160);
            at8.extend_from_slice(&buf[..m]);
        }
        let f = zero_crossing_hz(&at48[FRAME * 10..], 48_000.0);
        assert!((f - 700.0).abs() < 5.0, "{f} Hz");
        let f = zero_crossing_hz(&at8[1600..], 8000.0);
        assert!((f - 440.0).abs() < 5.0, "{f} Hz");
    }

    #[test]
    fn wrong_sizes_and_garbage_are_errors_not_panics() {
        let mut enc = OpusEncoder::new(RATE, EncoderSettings::default()).unwrap();
        let mut out = [0u8; MAX_PACKET];
        assert!(matches!(
            enc.encode(&[0; 480], &mut out),
            Err(OpusError::FrameSize {
                got: 480,
                want: 960
            })
        ));
        assert!(matches!(
            OpusEncoder::new(44_100, EncoderSettings::default()),
            Err(OpusError::Rate(44_100))
        ));
        let mut dec = OpusDecoder::new(RATE).unwrap();
        let mut pcm = [0i16; FRAME];
        assert!(dec.decode(&[], &mut pcm).is_err());
        // A code-3 packet claiming more frames than it holds.
        assert!(dec.decode(&[0xFF, 0xFF], &mut pcm).is_err());
        assert_eq!(dec.conceal(&mut pcm).unwrap(), FRAME);
    }
}
